// bm_generate: loads a Hugging Face model folder into the engine and generates from one prompt, streaming the text
// to stdout and printing prefill / decode speed to stderr. A developer's tool: no daemon, no HTTP, the same engine.
//
// Usage: bm_generate MODEL_DIR [--prompt TEXT] [--raw] [--backend cpu|cuda] [--max-tokens N] [--temperature T]
//                    [--top-p P] [--top-k K] [--seed S] [--threads N] [--ignore-eos] [--decode-graphs auto|on|off]
//                    [--tensor-parallel-size N] [--gpus 0,1]
// --gpus (cuda): the GPU of each tensor-parallel rank; several imply --tensor-parallel-size (their count), one is
// the device of a single rank.
// Without --raw the prompt is one user message rendered through the model's chat template (with the generation
// prompt); with --raw it is encoded as is.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/runtime/engine.h"
#include "engine/template/chat_template.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace engine = bm::engine;

struct Options {
  std::string model_dir;
  std::string prompt = "Write a haiku about GPUs.";
  bool raw = false;
  std::string backend = "cpu";
  int32_t max_tokens = 64;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = -1;
  std::optional<uint64_t> seed;
  int32_t threads = 0;
  int32_t tensor_parallel_size = 1;
  std::vector<int32_t> gpus;
  bool ignore_eos = false;
  engine::DecodeGraphMode decode_graphs = engine::DecodeGraphMode::kAuto;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "bm_generate: %s\n", message.c_str());
  std::exit(2);
}

template <typename T>
T parse_number(const char* flag, const char* text) {
  // from_chars parses integers exactly (a 64-bit seed would lose bits through a double) and refuses overflow.
  T value{};
  const char* end = text + std::strlen(text);
  const auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end) usage_error(std::string(flag) + " expects a number, got '" + text + "'");
  return value;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--prompt")
      o.prompt = value();
    else if (arg == "--raw")
      o.raw = true;
    else if (arg == "--backend")
      o.backend = value();
    else if (arg == "--max-tokens")
      o.max_tokens = parse_number<int32_t>("--max-tokens", value());
    else if (arg == "--temperature")
      o.temperature = parse_number<float>("--temperature", value());
    else if (arg == "--top-p")
      o.top_p = parse_number<float>("--top-p", value());
    else if (arg == "--top-k")
      o.top_k = parse_number<int32_t>("--top-k", value());
    else if (arg == "--seed")
      o.seed = parse_number<uint64_t>("--seed", value());
    else if (arg == "--threads")
      o.threads = parse_number<int32_t>("--threads", value());
    else if (arg == "--tensor-parallel-size")
      o.tensor_parallel_size = parse_number<int32_t>("--tensor-parallel-size", value());
    else if (arg == "--gpus") {
      const std::string list = value();
      size_t start = 0;
      while (start <= list.size()) {
        const size_t comma = std::min(list.find(',', start), list.size());
        o.gpus.push_back(parse_number<int32_t>("--gpus", list.substr(start, comma - start).c_str()));
        start = comma + 1;
      }
    } else if (arg == "--ignore-eos")
      o.ignore_eos = true;
    else if (arg == "--decode-graphs") {
      const std::string mode = value();
      if (mode == "auto")
        o.decode_graphs = engine::DecodeGraphMode::kAuto;
      else if (mode == "on")
        o.decode_graphs = engine::DecodeGraphMode::kOn;
      else if (mode == "off")
        o.decode_graphs = engine::DecodeGraphMode::kOff;
      else
        usage_error("--decode-graphs is auto, on or off, not '" + mode + "'");
    } else if (arg == "-h" || arg == "--help") {
      std::printf(
          "usage: bm_generate MODEL_DIR [--prompt TEXT] [--raw] [--backend cpu|cuda] [--max-tokens N]\n"
          "                   [--temperature T] [--top-p P] [--top-k K] [--seed S] [--threads N] [--ignore-eos]\n"
          "                   [--decode-graphs auto|on|off] [--tensor-parallel-size N] [--gpus 0,1]\n");
      std::exit(0);
    } else if (!arg.empty() && arg[0] == '-')
      usage_error("unknown option " + arg);
    else if (o.model_dir.empty())
      o.model_dir = arg;
    else
      usage_error("one model folder only");
  }
  if (o.model_dir.empty()) usage_error("give a model folder (see --help)");
  return o;
}

std::string render_prompt(const Options& o) {
  if (o.raw) return o.prompt;
  absl::StatusOr<engine::ChatTemplate> chat_template = engine::ChatTemplate::load(o.model_dir);
  if (!chat_template.ok()) usage_error(std::string(chat_template.status().message()));
  engine::Value message =
      engine::Value::object({{"role", engine::Value::string("user")}, {"content", engine::Value::string(o.prompt)}});
  engine::ChatTemplate::Inputs inputs;
  inputs.messages = engine::Value::array({message});
  absl::StatusOr<std::string> text = chat_template->render(inputs);
  if (!text.ok()) usage_error(std::string(text.status().message()));
  return *text;
}

// Collects the engine's outputs (on the engine thread) and hands them to the main thread.
struct Stream {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<engine::SequenceOutput> outputs;
  bool done = false;

  void push(engine::SequenceOutput out) {
    std::lock_guard<std::mutex> lock(mutex);
    done = done || out.finish.has_value();
    outputs.push_back(std::move(out));
    cv.notify_all();
  }
};

}  // namespace

int main(int argc, char** argv) {
  Options o = parse_options(argc, argv);
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer = engine::Tokenizer::load(o.model_dir);
  if (!tokenizer.ok()) usage_error(std::string(tokenizer.status().message()));
  std::vector<int32_t> prompt_ids = (*tokenizer)->encode(render_prompt(o), /*add_special_tokens=*/true);

  engine::EngineOptions options;
  options.backend = o.backend;
  options.num_threads = o.threads;
  options.tensor_parallel_size = o.tensor_parallel_size;
  if (o.gpus.size() == 1) options.device_index = o.gpus[0];
  if (o.gpus.size() > 1) {
    if (o.tensor_parallel_size != 1 && o.tensor_parallel_size != static_cast<int32_t>(o.gpus.size()))
      usage_error("--tensor-parallel-size " + std::to_string(o.tensor_parallel_size) + " does not match the " +
                  std::to_string(o.gpus.size()) + " GPUs --gpus names (one rank per GPU)");
    options.tensor_parallel_size = static_cast<int32_t>(o.gpus.size());
    options.devices = o.gpus;
  }
  options.decode_graphs = o.decode_graphs;
  Clock::time_point load_start = Clock::now();
  absl::StatusOr<std::unique_ptr<engine::Engine>> loaded = engine::Engine::load(o.model_dir, options);
  if (!loaded.ok()) usage_error(std::string(loaded.status().message()));
  engine::Engine& eng = **loaded;
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();

  engine::SamplingParams params;
  params.max_tokens = o.max_tokens;
  params.temperature = o.temperature;
  params.top_p = o.top_p;
  params.top_k = o.top_k;
  params.seed = o.seed;
  params.ignore_eos = o.ignore_eos;
  Stream stream;
  Clock::time_point start = Clock::now();
  absl::StatusOr<std::unique_ptr<engine::RequestHandle>> handle =
      eng.submit(prompt_ids, params, [&stream](engine::SequenceOutput out) { stream.push(std::move(out)); });
  if (!handle.ok()) usage_error(std::string(handle.status().message()));

  engine::IncrementalDetokenizer detokenizer(**tokenizer, /*skip_special_tokens=*/true);
  std::optional<Clock::time_point> first_token;
  int64_t generated = 0;
  std::string finish = "?";
  std::string error;
  for (bool done = false; !done;) {
    std::vector<engine::SequenceOutput> batch;
    {
      std::unique_lock<std::mutex> lock(stream.mutex);
      stream.cv.wait(lock, [&] { return !stream.outputs.empty(); });
      batch.swap(stream.outputs);
    }
    for (engine::SequenceOutput& out : batch) {
      if (!out.new_token_ids.empty() && !first_token) first_token = Clock::now();
      for (int32_t id : out.new_token_ids) std::fputs(detokenizer.push(id).c_str(), stdout);
      generated += static_cast<int64_t>(out.new_token_ids.size());
      std::fflush(stdout);
      if (out.finish) {
        done = true;
        finish = *out.finish == engine::FinishReason::kStop     ? "stop"
                 : *out.finish == engine::FinishReason::kLength ? "length"
                 : *out.finish == engine::FinishReason::kAbort  ? "abort"
                                                                : "error";
        error = out.error;
      }
    }
  }
  std::fputs(detokenizer.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  const Clock::time_point end = Clock::now();
  const double prefill_s = first_token ? std::chrono::duration<double>(*first_token - start).count() : 0;
  const double decode_s = first_token ? std::chrono::duration<double>(end - *first_token).count() : 0;
  std::fprintf(stderr,
               "backend %s, load %.2f s; prompt %zu tokens, first token after %.3f s (%.1f prompt tok/s); "
               "%lld tokens generated, decode %.1f tok/s; decode graphs %lld recorded, %lld replays; finish: %s%s%s\n",
               eng.backend_name().c_str(), load_s, prompt_ids.size(), prefill_s,
               prefill_s > 0 ? static_cast<double>(prompt_ids.size()) / prefill_s : 0.0,
               static_cast<long long>(generated), decode_s > 0 && generated > 1 ? (generated - 1) / decode_s : 0.0,
               static_cast<long long>(eng.stats().decode_graphs.captured),
               static_cast<long long>(eng.stats().decode_graphs.replayed), finish.c_str(), error.empty() ? "" : ": ",
               error.c_str());
  return finish == "error" ? 1 : 0;
}
