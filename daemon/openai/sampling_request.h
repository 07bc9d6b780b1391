#pragma once
// The sampling fields shared by /v1/chat/completions and /v1/completions, read from the request JSON and
// validated at the edge. Unset optionals take the model's generation_config.json defaults.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "daemon/openai/openai_error.h"
#include "daemon/openai/request_json.h"

namespace bm::daemon::openai {

struct SamplingRequest {
  int32_t n = 1;
  std::optional<int32_t> max_tokens;  // max_tokens or max_completion_tokens; unset: up to the context limit
  int32_t min_tokens = 0;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int32_t> top_k;
  double min_p = 0;
  double presence_penalty = 0;
  double frequency_penalty = 0;
  std::optional<double> repetition_penalty;
  std::map<int32_t, float> logit_bias;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool skip_special_tokens = true;
  int32_t logprobs = -1;  // -1: none; else the number of top alternatives (0 = only the chosen token)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

enum class Endpoint { kChat, kCompletions };

// Reads the shared fields; a wrong type or an out-of-range value is an ApiError naming the parameter.
std::variant<SamplingRequest, ApiError> parse_sampling_request(const RequestJson& body, Endpoint endpoint,
                                                               int32_t vocab_size);

}  // namespace bm::daemon::openai
