// libFuzzer target for the OpenAI API's request path: raw bytes → the HTTP/1.1 parser the connections use →
// the JSON body under its depth bound → sampling fields → request preparation (chat template, tokenizer,
// limits) against a model with the real Qwen2.5 tokenizer and template. Any input must end in a request to
// run or an ApiError: no crash, hang, leak or sanitizer report.
//
//   http_request_fuzz -max_total_time=60 -max_len=65536 <corpus dir>
// The tokenizer and template come from $BMSERVER_SHARED_MODELS (default ../shared/models beside the checkout).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string_view>

#include "daemon/openai/http_server.h"
#include "daemon/openai/request_body.h"
#include "daemon/openai/request_preparation.h"
#include "daemon/serving/served_model.h"
#include "engine/template/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using bm::daemon::serving::ServedModel;

// Preparation asks the generator only for its limits; nothing is submitted.
class LimitsOnlyGenerator final : public bm::daemon::serving::Generator {
 public:
  absl::StatusOr<std::unique_ptr<bm::daemon::serving::GenerationHandle>> submit(
      std::vector<int32_t>, const bm::daemon::serving::GenerationParams&, bm::daemon::serving::EventCallback,
      std::shared_ptr<const bm::engine::PromptMedia>) override {
    std::abort();  // the fuzzer never submits
  }
  bm::daemon::serving::GeneratorStats stats() const override { return {}; }
  int32_t max_model_len() const override { return 4096; }
  int32_t max_num_seqs() const override { return 16; }
};

ServedModel* g_model = nullptr;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "http_request_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("BMSERVER_SHARED_MODELS");
  const fs::path shared =
      env != nullptr && *env != '\0' ? fs::path(env) : fs::path(__FILE__).parent_path() / "../../../shared/models";
  const fs::path dir = shared / "Qwen/Qwen2.5-7B-Instruct";
  auto tokenizer = bm::engine::Tokenizer::load(dir);
  require(tokenizer.ok(), "cannot load the Qwen2.5 tokenizer (set BMSERVER_SHARED_MODELS)");
  auto chat_template = bm::engine::ChatTemplate::load(dir);
  require(chat_template.ok(), "cannot load the Qwen2.5 chat template");
  g_model = new ServedModel();
  g_model->name = "m";
  g_model->repo_id = "org/m";
  g_model->tool_call_format = "hermes";
  g_model->tokenizer = std::shared_ptr<const bm::engine::Tokenizer>(std::move(*tokenizer));
  g_model->chat_template = std::make_shared<const bm::engine::ChatTemplate>(std::move(*chat_template));
  g_model->generator = std::make_unique<LimitsOnlyGenerator>();
  g_model->set_ready();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace bm::daemon::openai;
  HttpServerOptions options;
  options.max_body_bytes = 1 << 20;
  absl::StatusOr<HttpRequest> request =
      parse_http_request(std::string_view(reinterpret_cast<const char*>(data), size), options);
  if (!request.ok()) return 0;
  std::variant<bm::daemon::openai::RequestJson, ApiError> body = parse_request_body(request->body);
  if (std::holds_alternative<ApiError>(body)) return 0;
  const auto& json = std::get<bm::daemon::openai::RequestJson>(body);
  const std::string& path = request->path;
  if (path == "/v1/completions") {
    auto prepared = prepare_completion(*g_model, json);
    if (auto* ok = std::get_if<SessionOptions>(&prepared))
      require(!ok->choices.empty() && ok->choices.size() <= 16, "prepared more sequences than max_num_seqs");
  } else if (path == "/tokenize") {
    (void)render_chat_prompt(*g_model, json, /*include_tools=*/true, nullptr);
  } else {
    auto prepared = prepare_chat(*g_model, json);
    if (auto* ok = std::get_if<SessionOptions>(&prepared))
      require(!ok->choices.empty() && ok->choices.size() <= 16, "prepared more sequences than max_num_seqs");
  }
  return 0;
}
