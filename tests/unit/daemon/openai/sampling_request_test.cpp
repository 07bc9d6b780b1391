#include "daemon/openai/sampling_request.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace bm::daemon::openai {
namespace {

using json = nlohmann::ordered_json;  // RequestJson

ApiError expect_error(const char* body, Endpoint endpoint = Endpoint::kChat) {
  auto parsed = parse_sampling_request(json::parse(body), endpoint, 1000);
  EXPECT_TRUE(std::holds_alternative<ApiError>(parsed)) << body;
  return std::holds_alternative<ApiError>(parsed) ? std::get<ApiError>(parsed) : ApiError{};
}

TEST(SamplingRequestTest, ReadsEveryField) {
  auto parsed = parse_sampling_request(json::parse(R"({
    "n": 2, "max_completion_tokens": 50, "min_tokens": 3, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
    "min_p": 0.05, "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
    "logit_bias": {"12": 5, "7": -100}, "seed": 2025, "stop": ["END", "\n\n"], "stop_token_ids": [3],
    "ignore_eos": true, "logprobs": true, "top_logprobs": 5, "stream": true,
    "stream_options": {"include_usage": true}, "unknown_field": {"ignored": 1}})"),
                                       Endpoint::kChat, 1000);
  ASSERT_TRUE(std::holds_alternative<SamplingRequest>(parsed)) << std::get<ApiError>(parsed).message;
  const SamplingRequest& r = std::get<SamplingRequest>(parsed);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.max_tokens, 50);
  EXPECT_EQ(r.min_tokens, 3);
  EXPECT_DOUBLE_EQ(*r.temperature, 0.5);
  EXPECT_EQ(*r.top_k, 40);
  EXPECT_EQ(r.logit_bias.at(12), 5.0f);
  EXPECT_EQ(r.logit_bias.at(7), -100.0f);
  EXPECT_EQ(*r.seed, 2025u);
  EXPECT_EQ(r.stop.size(), 2u);
  EXPECT_EQ(r.stop_token_ids, std::vector<int32_t>{3});
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.logprobs, 5);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(SamplingRequestTest, DefaultsLeaveModelDefaultsUnset) {
  auto parsed = parse_sampling_request(json::parse("{}"), Endpoint::kCompletions, 1000);
  const SamplingRequest& r = std::get<SamplingRequest>(parsed);
  EXPECT_FALSE(r.temperature.has_value());
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(r.n, 1);
}

TEST(SamplingRequestTest, RejectsOutOfRangeAndWrongTypes) {
  EXPECT_EQ(expect_error(R"({"top_p": 1.5})").param, "top_p");
  EXPECT_EQ(expect_error(R"({"max_tokens": -1})").param, "max_tokens");
  EXPECT_EQ(expect_error(R"({"max_tokens": "10"})").param, "max_tokens");
  EXPECT_EQ(expect_error(R"({"temperature": -0.1})").param, "temperature");
  EXPECT_EQ(expect_error(R"({"n": 0})").param, "n");
  EXPECT_EQ(expect_error(R"({"n": 1.5})").param, "n");
  EXPECT_EQ(expect_error(R"({"stop": 5})").param, "stop");
  EXPECT_EQ(expect_error(R"({"logit_bias": {"abc": 1}})").param, "logit_bias");
  EXPECT_EQ(expect_error(R"({"logit_bias": {"5000": 1}})").param, "logit_bias");
  EXPECT_EQ(expect_error(R"({"stream": "yes"})").param, "stream");
  EXPECT_EQ(expect_error(R"({"stream_options": {"include_usage": true}})").param, "stream_options");
  EXPECT_EQ(expect_error(R"({"top_logprobs": 3})").param, "top_logprobs");
  EXPECT_EQ(expect_error(R"({"top_logprobs": 30, "logprobs": true})").param, "top_logprobs");
  EXPECT_EQ(expect_error(R"({"min_tokens": 5, "max_tokens": 2})").param, "min_tokens");
  EXPECT_EQ(expect_error(R"({"logprobs": true})", Endpoint::kCompletions).param, "logprobs");
  EXPECT_NE(expect_error(R"({"top_p": 1.5})").message.find("1.5"), std::string::npos);
}

}  // namespace
}  // namespace bm::daemon::openai
