#include "daemon/openai/request_body.h"

#include <gtest/gtest.h>

namespace bm::daemon::openai {
namespace {

std::string nested_array(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

TEST(RequestBodyTest, ParsesAnObject) {
  auto parsed = parse_request_body(R"({"model": "m", "messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(std::holds_alternative<RequestJson>(parsed));
  EXPECT_EQ(std::get<RequestJson>(parsed)["model"], "m");
}

TEST(RequestBodyTest, DeepNestingIsA400BeforeAnythingWalksIt) {
  // 200,000 levels inside a message: the body that crashed bmserverd (SIGSEGV while the tree was copied).
  std::string body = R"({"model": "m", "messages": [{"role": "user", "content": )" + nested_array(200000) + "}]}";
  auto parsed = parse_request_body(body);
  ASSERT_TRUE(std::holds_alternative<ApiError>(parsed));
  EXPECT_EQ(std::get<ApiError>(parsed).status, 400);
  EXPECT_NE(std::get<ApiError>(parsed).message.find("deeper than 64 levels"), std::string::npos);
}

TEST(RequestBodyTest, TheBoundIsExact) {
  // The body object is level 1: 63 nested arrays inside it make 64 levels, one more is refused.
  EXPECT_TRUE(std::holds_alternative<RequestJson>(parse_request_body(R"({"a": )" + nested_array(63) + "}")));
  EXPECT_TRUE(std::holds_alternative<ApiError>(parse_request_body(R"({"a": )" + nested_array(64) + "}")));
  RequestJson out;
  EXPECT_EQ(parse_json_bounded(nested_array(10), 10, out), JsonParse::kOk);
  EXPECT_EQ(parse_json_bounded(nested_array(11), 10, out), JsonParse::kTooDeep);
  EXPECT_EQ(parse_json_bounded("[1, 2", 10, out), JsonParse::kInvalid);
}

TEST(RequestBodyTest, NonObjectsAndGarbageAre400s) {
  for (const char* body : {"", "[]", "\"x\"", "12", "null", "{", "{\"a\":}", "\xff\xfe", "{} {}"}) {
    auto parsed = parse_request_body(body);
    ASSERT_TRUE(std::holds_alternative<ApiError>(parsed)) << body;
    EXPECT_EQ(std::get<ApiError>(parsed).status, 400) << body;
  }
}

TEST(WithoutPathsTest, CutsAbsolutePathsToTheirLastComponent) {
  EXPECT_EQ(without_paths("cannot read /home/ann/models/Qwen/config.json: No such file"),
            "cannot read config.json: No such file");
  EXPECT_EQ(without_paths("'/srv/m/x/' is not a model folder"), "'x' is not a model folder");
  EXPECT_EQ(without_paths("tensor model.layers.0 / 2 heads"), "tensor model.layers.0 / 2 heads");
  EXPECT_EQ(without_paths("size 3/4 of /a"), "size 3/4 of /a");
}

}  // namespace
}  // namespace bm::daemon::openai
