#include "daemon/bench/benchmark_runner.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/catalog/catalog.h"
#include "common/version.h"
#include "daemon/bench/metrics.h"
#include "daemon/bench/openai_client.h"
#include "daemon/bench/prompt_builder.h"
#include "daemon/bench/results_store.h"
#include "daemon/bench/svg_plot.h"
#include "daemon/bench/sweep.h"
#include "daemon/bench/synthetic_image.h"
#include "daemon/control/serve_settings.h"
#include "daemon/serving/engine_manager.h"
#include "engine/backend/device_info.h"

namespace bm::daemon::bench {
namespace {

using bmserver::v1::BenchmarkEvent;
using bmserver::v1::BenchmarkResult;
using json = nlohmann::json;

BenchmarkEvent message_event(const std::string& text) {
  BenchmarkEvent e;
  e.set_kind("message");
  e.set_message(text);
  return e;
}

void fill_stats(const Distribution& d, bmserver::v1::LatencyStats* out) {
  out->set_mean(d.mean);
  out->set_p50(d.p50);
  out->set_p90(d.p90);
  out->set_p99(d.p99);
}

// Polls GET /metrics while a run lasts and keeps the highest KV usage seen.
class KvUsagePoller {
 public:
  KvUsagePoller(const OpenAiClient& client, std::string model) : client_(client), model_(std::move(model)) {
    thread_ = std::thread([this] {
      // The gauge is a nicety: if polling fails in an unexpected way the run goes on without it.
      try {
        loop();
      } catch (...) {
      }
    });
  }
  ~KvUsagePoller() { stop(); }
  double stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    return peak_;  // the thread has ended: no lock needed
  }

 private:
  // Polls at least once, even when the run ends before this thread gets going (short runs on a loaded machine):
  // a run always reports the gauge when the server has one.
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    do {
      lock.unlock();
      absl::StatusOr<HttpReply> reply = client_.get("/metrics", /*timeout_s=*/5);
      lock.lock();
      if (reply.ok() && reply->status == 200) peak_ = std::max(peak_, parse_kv_usage(reply->body, model_));
      if (stopping_) break;
      cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
    } while (!stopping_);
  }
  const OpenAiClient& client_;
  std::string model_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  double peak_ = -1;
  std::thread thread_;
};

// Marks requests whose token counts are not the ones asked for: the numbers would not mean what they say.
void check_lengths(std::vector<RequestRecord>& records, const TokenPair& pair) {
  for (RequestRecord& r : records) {
    if (!r.ok()) continue;
    if (r.completion_tokens != pair.completion_tokens) {
      r.error = absl::StrCat("the server returned ", r.completion_tokens, " completion tokens instead of ",
                             pair.completion_tokens, " (does it honour ignore_eos and report usage?)");
    } else if (r.prompt_tokens != pair.prompt_tokens) {
      r.error = absl::StrCat("the server counted ", r.prompt_tokens, " prompt tokens instead of ", pair.prompt_tokens);
    }
  }
}

// The images of the image workload, as data URLs. Every request gets images no earlier request had (image i of
// the seed), so the server's encoder cache and its media-keyed prefix cache cannot skip the vision tower: TTFT
// includes decoding, preprocessing and encoding every time, as for distinct users' pictures.
class ImageSource {
 public:
  explicit ImageSource(const SweepPlan& plan) : plan_(plan) {}
  bool empty() const { return plan_.images_per_prompt == 0; }
  std::vector<std::string> next() {
    std::vector<std::string> urls;
    for (int32_t i = 0; i < plan_.images_per_prompt; ++i)
      urls.push_back(png_data_url(
          encode_png(make_synthetic_image(plan_.image_width, plan_.image_height, plan_.seed, next_index_++))));
    return urls;
  }

 private:
  const SweepPlan& plan_;
  uint64_t next_index_ = 0;
};

absl::StatusOr<BenchmarkResult> run_level(const OpenAiClient& client, const BenchmarkTarget& target,
                                          PromptBuilder& prompts, ImageSource& images, const TokenPair& pair,
                                          int32_t concurrency, const EventSink& emit,
                                          const std::function<bool()>& cancelled) {
  BenchmarkEvent started;
  started.set_kind("run_started");
  started.set_num_prompt_tokens(pair.prompt_tokens);
  started.set_num_completion_tokens(pair.completion_tokens);
  started.set_num_requests(concurrency);
  started.set_message(absl::StrCat("Benchmarking ", target.base.model_name(), " with ", concurrency, " requests (",
                                   pair.prompt_tokens, " tokens -> ", pair.completion_tokens, " tokens)"));
  emit(started);

  // Warm-up (1 completion token), as the original; its failure means the server cannot take the run at all.
  absl::StatusOr<std::string> warm_text = prompts.build(pair.prompt_tokens);
  if (!warm_text.ok()) return warm_text.status();
  std::vector<RequestRecord> warm =
      client.stream_chat({chat_request_body(target.model, *warm_text, 1, images.next())}, [](size_t) {});
  if (!warm[0].ok())
    return absl::FailedPreconditionError(absl::StrCat("the warm-up request to ", client.base_url(), " failed: ",
                                                      warm[0].error.empty() ? "no tokens came back" : warm[0].error));
  std::vector<std::string> bodies;
  for (int32_t i = 0; i < concurrency; ++i) {
    absl::StatusOr<std::string> text = prompts.build(pair.prompt_tokens);
    if (!text.ok()) return text.status();
    bodies.push_back(chat_request_body(target.model, *text, pair.completion_tokens, images.next()));
  }
  if (cancelled()) return absl::CancelledError("the benchmark was cancelled");

  KvUsagePoller poller(client, target.model);
  int32_t num_done = 0;
  std::vector<RequestRecord> records = client.stream_chat(
      bodies,
      [&](size_t) {
        BenchmarkEvent progress;
        progress.set_kind("progress");
        progress.set_num_prompt_tokens(pair.prompt_tokens);
        progress.set_num_completion_tokens(pair.completion_tokens);
        progress.set_num_requests(concurrency);
        progress.set_num_done(++num_done);
        emit(progress);
      },
      cancelled);
  double peak_kv = poller.stop();
  if (cancelled()) return absl::CancelledError("the benchmark was cancelled");

  double release = records.empty() ? 0 : records.front().start_s;
  double last_end = release;
  for (const RequestRecord& r : records) last_end = std::max(last_end, r.end_s);
  check_lengths(records, pair);
  RunMetrics m = compute_run_metrics(records, last_end - release, pair.completion_tokens);

  BenchmarkResult r = target.base;
  r.set_num_prompt_tokens(pair.prompt_tokens);
  r.set_num_completion_tokens(pair.completion_tokens);
  r.set_num_requests(concurrency);
  r.set_request_throughput_min(m.request_throughput_min);
  r.set_completion_token_throughput(m.output_throughput);
  r.set_total_token_throughput(m.total_token_throughput);
  r.set_mean_latency(m.mean_latency_s);
  r.set_mean_ttft_ms(m.ttft_ms.mean);
  r.set_mean_tpot_ms(m.mean_tpot_original_ms);
  r.set_num_completed(m.num_completed);
  r.set_num_errors(m.num_errors);
  r.set_duration_s(m.duration_s);
  r.set_request_throughput(m.request_throughput);
  fill_stats(m.ttft_ms, r.mutable_ttft_ms());
  fill_stats(m.tpot_ms, r.mutable_tpot_ms());
  fill_stats(m.itl_ms, r.mutable_itl_ms());
  fill_stats(m.e2el_ms, r.mutable_e2el_ms());
  r.set_peak_kv_usage(peak_kv);
  r.set_first_error(m.first_error);
  r.set_created_at(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone()));
  return r;
}

std::string settings_json(const serving::ServeSettings& s, const std::string& backend) {
  json j = {{"backend", backend},
            {"max_model_len", s.max_model_len},
            {"max_num_seqs", s.max_num_seqs},
            {"gpu_memory_utilization", s.gpu_memory_utilization},
            {"max_num_batched_tokens", s.max_num_batched_tokens},
            {"kv_cache_bytes", s.kv_cache_bytes},
            {"enforce_eager", s.enforce_eager},
            {"threads", s.threads},
            {"kv_cache_dtype", s.kv_cache_dtype},
            {"enable_prefix_caching", s.enable_prefix_caching},
            {"tensor_parallel_size", s.tensor_parallel_size},
            {"seed", s.seed}};
  if (!s.extra_params.empty()) j["extra_params"] = s.extra_params;
  if (!s.gpus.empty()) j["gpus"] = s.gpus;
  return j.dump();
}

void fill_environment(BenchmarkResult& base, const std::string& backend, const std::vector<int32_t>& gpus) {
  base.set_bmserver_version(std::string(common::version()));
  base.set_backend(backend);
  if (backend == "cpu") {
    base.set_nvidia_device_name("cpu");
    base.set_nvidia_device_count(0);
    return;
  }
  engine::DeviceInfo devices = engine::detect_devices();
  base.set_nvidia_driver_version(devices.driver_version);
  if (devices.gpus.empty()) {
    base.set_nvidia_device_name(backend == "endpoint" ? "unknown" : "none");
    return;
  }
  size_t first = gpus.empty() ? 0 : static_cast<size_t>(std::max(0, gpus.front()));
  base.set_nvidia_device_name(devices.gpus[std::min(first, devices.gpus.size() - 1)].name);
  base.set_nvidia_device_count(static_cast<int32_t>(gpus.empty() ? devices.gpus.size() : gpus.size()));
}

void fill_catalog_facts(BenchmarkResult& base, const std::string& name) {
  if (const common::CatalogEntry* e = common::find_catalog_entry(name)) {
    base.set_model_series(e->series);
    base.set_model_size(e->size_b);
    base.set_model_quant(std::string(common::original_quant_value(e->quant)));
    base.set_model_modal(e->modality);
    base.set_model_tool_call(e->tool_call);
    base.set_model_reasoning(e->reasoning);
    base.set_model_repo_id(e->hf_repo_id);  // the original stores the HF id whatever the hub
  }
}

}  // namespace

absl::StatusOr<std::vector<BenchmarkResult>> run_sweep(const BenchmarkTarget& target, const SweepPlan& plan,
                                                       const EventSink& emit, const std::function<bool()>& cancelled) {
  absl::StatusOr<std::vector<TokenPair>> pairs =
      make_token_pairs(plan.prompt_tokens, plan.completion_tokens, target.max_model_len);
  if (!pairs.ok()) return pairs.status();
  OpenAiClient client(target.base_url, target.api_key);
  PromptBuilder prompts(server_token_counter(client, target.model), plan.seed);
  ImageSource images(plan);
  BenchmarkTarget with_images = target;  // the rows' base, with the image workload's settings
  if (!images.empty()) {
    // What the images add to a prompt, as the server counts it (/tokenize with the images, else a 1-token
    // completion's usage): the same count the requests' usage must then report, on any OpenAI server, with no
    // copy of the model's processor here. The text is then built to P minus this.
    std::string what = absl::StrCat(plan.images_per_prompt, plan.images_per_prompt == 1 ? " image" : " images", " of ",
                                    plan.image_width, "x", plan.image_height);
    absl::StatusOr<int32_t> text_only = server_token_counter(client, target.model)("");
    if (!text_only.ok()) return text_only.status();
    absl::StatusOr<int32_t> with = server_token_counter(client, target.model, images.next())("");
    if (!with.ok())
      return absl::FailedPreconditionError(
          absl::StrCat("the server cannot take ", what, ": ", with.status().message()));
    int32_t image_tokens = *with - *text_only;
    if (image_tokens <= 0)
      return absl::FailedPreconditionError(
          absl::StrCat("the server counted no tokens for ", what, " (does ", target.model, " take images?)"));
    prompts.reserve_image_tokens(image_tokens, what);
    with_images.base.set_images_per_prompt(plan.images_per_prompt);
    with_images.base.set_image_width(plan.image_width);
    with_images.base.set_image_height(plan.image_height);
    with_images.base.set_num_image_tokens(image_tokens);
    emit(message_event(absl::StrCat("each request carries ", what, ": ", image_tokens,
                                    " prompt tokens (pads and vision markers) of its P")));
  }
  // Every P must hold the template (and the images) before the first run, so that a short one costs no run.
  for (const TokenPair& pair : *pairs)
    if (absl::Status s = prompts.check(pair.prompt_tokens); !s.ok()) return s;
  std::vector<BenchmarkResult> results;
  for (const TokenPair& pair : *pairs) {
    bool probing = target.kv_capacity_tokens <= 0 && target.max_concurrency <= 0;
    int32_t max = 0;
    if (target.max_concurrency > 0) {
      max = std::min(target.max_concurrency, kMaxConcurrentRequests);
    } else if (!probing) {
      max = max_concurrency(target.kv_capacity_tokens, pair, target.max_num_seqs);
    } else {
      max = kMaxConcurrentRequests;
    }
    if (max == 0) {
      BenchmarkEvent skipped;
      skipped.set_kind("skipped");
      skipped.set_num_prompt_tokens(pair.prompt_tokens);
      skipped.set_num_completion_tokens(pair.completion_tokens);
      skipped.set_message(absl::StrCat("skipped ", pair.prompt_tokens, " -> ", pair.completion_tokens,
                                       " tokens: not one request fits the KV cache of ", target.kv_capacity_tokens,
                                       " tokens"));
      emit(skipped);
      continue;
    }
    size_t first_of_pair = results.size();
    double single_tpot = 0;
    int32_t last_good = 0;
    for (int32_t n : concurrency_levels(max)) {
      absl::StatusOr<BenchmarkResult> r = run_level(client, with_images, prompts, images, pair, n, emit, cancelled);
      if (!r.ok()) return r.status();
      r->set_max_requests(max);
      BenchmarkEvent event;
      event.set_kind("result");
      *event.mutable_result() = *r;
      results.push_back(*r);
      if (probing) {
        if (n == 1) single_tpot = r->tpot_ms().p50();
        bool blew_up = r->num_errors() > 0 || (single_tpot > 0 && r->tpot_ms().p50() > kProbeTpotBlowUp * single_tpot);
        if (!blew_up) last_good = n;
        for (size_t i = first_of_pair; i < results.size(); ++i) results[i].set_max_requests(std::max(last_good, 1));
        event.mutable_result()->set_max_requests(std::max(last_good, 1));
        emit(event);
        if (blew_up) {
          emit(message_event(absl::StrCat("probe: stopped at ", n, " concurrent requests (",
                                          r->num_errors() > 0 ? "errors" : "TPOT blew up", "); maximum ", last_good)));
          break;
        }
      } else {
        emit(event);
      }
    }
  }
  return results;
}

absl::Status BenchmarkRunner::run(const bmserver::v1::RunBenchmarkRequest& request, const EventSink& emit,
                                  const std::function<bool()>& cancelled) {
  // Input first, so that bad flags cost nothing.
  SweepPlan plan;
  plan.prompt_tokens.assign(request.prompt_tokens().begin(), request.prompt_tokens().end());
  plan.completion_tokens.assign(request.completion_tokens().begin(), request.completion_tokens().end());
  plan.seed = request.seed();
  plan.images_per_prompt = request.images_per_prompt();
  plan.image_width = request.image_width();
  plan.image_height = request.image_height();
  if (absl::Status s = check_image_workload(plan.images_per_prompt, plan.image_width, plan.image_height); !s.ok())
    return s;
  if (absl::StatusOr<std::vector<TokenPair>> pairs = make_token_pairs(plan.prompt_tokens, plan.completion_tokens, 0);
      !pairs.ok())
    return pairs.status();
  if (request.endpoint().empty() && request.name().empty())
    return absl::InvalidArgumentError("name a model to benchmark, or give --endpoint");
  if (request.max_concurrency() < 0) return absl::InvalidArgumentError("--max-concurrency must not be negative");

  bool expected = false;
  if (!busy_.compare_exchange_strong(expected, true))
    return absl::FailedPreconditionError("another benchmark is running in this daemon; runs at once would skew both");
  struct Release {
    std::atomic<bool>& busy;
    ~Release() { busy = false; }
  } release{busy_};

  // A store that cannot be reached fails the benchmark before it starts.
  std::unique_ptr<ResultsStore> store;
  if (!request.no_store()) {
    absl::StatusOr<std::unique_ptr<ResultsStore>> opened = open_results_store(state_dir_, request.postgres_url());
    if (!opened.ok()) return opened.status();
    store = std::move(*opened);
    if (absl::Status s = store->check(); !s.ok()) return s;
    emit(message_event("results go to " + store->describe()));
  }

  std::vector<BenchmarkResult> results;
  absl::Status s = request.endpoint().empty() ? run_served(request, plan, emit, cancelled, results)
                                              : run_endpoint(request, plan, emit, cancelled, results);
  if (!s.ok()) return s;

  BenchmarkEvent done;
  done.set_kind("done");
  if (store && !results.empty()) {
    if (absl::Status w = store->upsert(results); !w.ok()) return w;
    done.set_store(store->describe());
  }
  if (request.with_plot())
    done.set_plot_svg(render_svg_plot(
        results,
        absl::StrCat("bmserver chat benchmark: ", results.empty() ? request.name() : results.front().model_name())));
  for (const BenchmarkResult& r : results) *done.add_results() = r;
  done.set_message(absl::StrCat(results.size(), " runs"));
  emit(done);
  return absl::OkStatus();
}

absl::Status BenchmarkRunner::run_served(const bmserver::v1::RunBenchmarkRequest& request, const SweepPlan& plan,
                                         const EventSink& emit, const std::function<bool()>& cancelled,
                                         std::vector<BenchmarkResult>& results) {
  if (!engines_) return absl::FailedPreconditionError("this daemon has no engines to serve a model");
  std::shared_ptr<serving::ServedModel> model;
  for (const auto& m : engines_->list())
    if (m->answers_to(request.name()) || m->path == request.name()) model = m;
  bool started_here = false;
  // A text-only model cannot take the image workload: said before serving when the catalog knows the model,
  // else as soon as it is loaded (a model folder), before any request.
  auto text_only = [&](const std::string& name) {
    return absl::InvalidArgumentError(
        absl::StrCat("--images-per-prompt needs a model that takes images, and ", name, " is text-only"));
  };
  if (plan.images_per_prompt > 0) {
    const common::CatalogEntry* e = model ? nullptr : common::find_catalog_entry(request.name());
    if ((model && model->modality == "T") || (e && e->modality == "T")) return text_only(request.name());
  }
  if (!model) {
    absl::StatusOr<serving::ServeSettings> settings =
        control::serve_settings_from_proto(request.store(), request.serve());
    if (!settings.ok()) return settings.status();
    serving::ServeCommand command;
    command.name = request.name();
    command.settings = *std::move(settings);
    // The benchmark's seed seeds the engine too when the serve options bring none.
    if (command.settings.seed == 0) command.settings.seed = request.seed();
    emit(message_event("serving " + request.name() + " for the benchmark"));
    absl::StatusOr<std::shared_ptr<serving::ServedModel>> served = engines_->serve(
        command, [&](const serving::ServeProgress& p) { emit(message_event(p.phase + ": " + p.message)); });
    if (!served.ok()) return served.status();
    model = *served;
    started_here = true;
  }
  if (model->state() != serving::ModelState::kReady || !model->generator)
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", model->name,
        "' is not ready: ", model->state() == serving::ModelState::kFailed ? model->error() : "still loading"));
  if (plan.images_per_prompt > 0 && model->modality == "T") {
    if (started_here) (void)engines_->stop(model->name);
    return text_only(request.name());
  }
  serving::GeneratorStats stats = model->generator->stats();
  BenchmarkTarget target;
  target.base_url = http_url_();
  target.api_key = model->settings.api_key;
  target.model = model->name;
  target.kv_capacity_tokens = stats.kv_capacity_tokens;
  target.max_num_seqs = model->generator->max_num_seqs();
  target.max_model_len = model->generator->max_model_len();
  BenchmarkResult& base = target.base;
  base.set_model_name(model->name);
  base.set_model_repo_id(model->repo_id);
  base.set_model_modal(model->modality);
  base.set_model_tool_call(model->tool_call_format);
  base.set_model_reasoning(model->reasoning_format);
  fill_catalog_facts(base, model->name);
  // The GPUs used (the claimed group, one per rank) and the ranks: GPUs on a GPU backend, CPU ranks on the cpu one.
  fill_environment(base, model->backend, model->settings.gpus);
  base.set_tensor_parallel_size(model->ranks.empty() ? model->settings.tensor_parallel_size
                                                     : static_cast<int32_t>(model->ranks.size()));
  base.set_engine_name("bmserverd");
  base.set_engine_version(std::string(common::version()));
  base.set_seed(static_cast<int64_t>(plan.seed));
  base.set_serve_options(settings_json(model->settings, model->backend));
  base.set_max_cache_tokens(stats.kv_capacity_tokens);
  base.set_max_num_seqs(std::min(target.max_num_seqs, kMaxConcurrentRequests));
  base.set_max_model_len(target.max_model_len);
  emit(message_event(absl::StrCat("KV cache ", stats.kv_capacity_tokens, " tokens (", stats.num_kv_blocks,
                                  " blocks), max model len ", target.max_model_len, ", max num seqs ",
                                  target.max_num_seqs)));

  absl::StatusOr<std::vector<BenchmarkResult>> swept = run_sweep(target, plan, emit, cancelled);
  if (started_here) {
    // Leave the daemon as it was found.
    if (absl::StatusOr<std::shared_ptr<serving::ServedModel>> stopped = engines_->stop(model->name); !stopped.ok())
      spdlog::warn("benchmark: cannot stop {}: {}", model->name, std::string(stopped.status().message()));
  }
  if (!swept.ok()) return swept.status();
  results = std::move(*swept);
  return absl::OkStatus();
}

absl::Status BenchmarkRunner::run_endpoint(const bmserver::v1::RunBenchmarkRequest& request, const SweepPlan& plan,
                                           const EventSink& emit, const std::function<bool()>& cancelled,
                                           std::vector<BenchmarkResult>& results) {
  OpenAiClient client(request.endpoint(), request.api_key());
  absl::StatusOr<HttpReply> models = client.get("/v1/models");
  if (!models.ok()) return models.status();
  json list = json::parse(models->body, nullptr, false);
  if (models->status == 401 || models->status == 403)
    return absl::PermissionDeniedError(
        absl::StrCat(client.base_url(), " refused the API key (HTTP ", models->status, "); pass --api-key"));
  if (models->status != 200 || list.is_discarded() || !list.is_object() || !list.contains("data") ||
      !list["data"].is_array())
    return absl::FailedPreconditionError(
        absl::StrCat(client.base_url(), " is not an OpenAI-compatible server: GET /v1/models answered HTTP ",
                     models->status, " without a model list"));
  BenchmarkTarget target;
  target.base_url = client.base_url();
  target.api_key = request.api_key();
  target.model = request.model();
  const json* card = nullptr;
  for (const json& m : list["data"]) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
    if (target.model.empty() || m["id"].get<std::string>() == target.model) {
      card = &m;
      break;
    }
  }
  if (!card)
    return absl::NotFoundError(target.model.empty()
                                   ? absl::StrCat(client.base_url(), " serves no model")
                                   : absl::StrCat(client.base_url(), " does not serve '", target.model, "'"));
  target.model = (*card)["id"].get<std::string>();
  if (card->contains("max_model_len") && (*card)["max_model_len"].is_number_integer())
    target.max_model_len = (*card)["max_model_len"].get<int32_t>();
  target.max_concurrency = request.max_concurrency();
  BenchmarkResult& base = target.base;
  std::string name = request.name().empty() ? target.model : request.name();
  base.set_model_name(name);
  base.set_model_repo_id(target.model);
  fill_catalog_facts(base, name);
  fill_environment(base, "endpoint", {});
  base.set_engine_name(client.base_url());
  if (card->contains("owned_by") && (*card)["owned_by"].is_string())
    base.set_engine_version((*card)["owned_by"].get<std::string>());
  base.set_seed(static_cast<int64_t>(plan.seed));
  base.set_serve_options(
      json({{"endpoint", client.base_url()}, {"max_concurrency", request.max_concurrency()}}).dump());
  base.set_max_model_len(target.max_model_len);
  base.set_max_num_seqs(request.max_concurrency());
  emit(message_event(absl::StrCat("benchmarking ", target.model, " at ", client.base_url(),
                                  request.max_concurrency() > 0
                                      ? absl::StrCat(" up to ", request.max_concurrency(), " concurrent requests")
                                      : std::string(" (probing the maximum concurrency)"))));
  absl::StatusOr<std::vector<BenchmarkResult>> swept = run_sweep(target, plan, emit, cancelled);
  if (!swept.ok()) return swept.status();
  results = std::move(*swept);
  return absl::OkStatus();
}

absl::StatusOr<bmserver::v1::ListBenchmarksResponse> BenchmarkRunner::list(
    const bmserver::v1::ListBenchmarksRequest& request) {
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = open_results_store(state_dir_, request.postgres_url());
  if (!store.ok()) return store.status();
  absl::StatusOr<std::vector<BenchmarkResult>> rows = (*store)->list(request.model_name());
  if (!rows.ok()) return rows.status();
  bmserver::v1::ListBenchmarksResponse response;
  response.set_store((*store)->describe());
  if (request.with_plot())
    response.set_plot_svg(render_svg_plot(
        *rows,
        absl::StrCat("bmserver chat benchmark: ", request.model_name().empty() ? "all models" : request.model_name())));
  for (auto& r : *rows) *response.add_results() = std::move(r);
  return response;
}

}  // namespace bm::daemon::bench
