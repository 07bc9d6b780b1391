#include "engine/runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend/backend.h"
#include "engine/model/model_config.h"
#include "engine/models/model_loader.h"

namespace bm::engine {
namespace {

// At most this long capturing decode graphs at load (a 7B model's step graph takes tens of milliseconds to run
// and record, so a few hundred shapes fit).
constexpr std::chrono::milliseconds kLoadGraphCaptureBudget{10000};

constexpr int64_t kGiB = int64_t{1} << 30;

std::string gib(int64_t bytes) {
  return absl::StrCat(static_cast<double>(bytes * 100 / kGiB) / 100.0, " GiB");
}

// A step's token budget: a CPU step stays short so decodes keep flowing while a long prompt prefills; never
// below max_num_seqs, so every running sequence can decode in one step.
SchedulerOptions scheduler_options_for(const EngineOptions& options, const std::string& backend) {
  int32_t budget =
      options.max_num_batched_tokens > 0 ? options.max_num_batched_tokens : (backend == "cpu" ? 512 : 8192);
  return SchedulerOptions{options.max_num_seqs, std::max(budget, options.max_num_seqs)};
}

// Off the CPU, one forward of the largest step the scheduler can make (its token budget over max_num_seqs
// sequences, each wanting logits) over a one-block cache: the activation buffers grow to their peak before the
// KV cache is sized from what memory is left, so the cache never starves a later step. The values are garbage
// (every position writes block 0) and are discarded; asking for the largest candidate sets, with every row under a
// grammar mask of its own, grows those buffers too and spares copying max_num_seqs whole rows of logits to the host.
absl::Status grow_activations_to_peak(CausalLM& model, const SchedulerOptions& scheduler) {
  if (absl::Status s = model.allocate_kv_cache(1); !s.ok()) return s;
  const int32_t num_seqs = scheduler.max_num_seqs;
  const int32_t longest = std::max(1, model.info().max_position_embeddings - 1);
  ForwardBatch batch;
  for (int32_t i = 0; i < num_seqs; ++i) {
    int32_t len =
        scheduler.max_num_batched_tokens / num_seqs + (i == 0 ? scheduler.max_num_batched_tokens % num_seqs : 0);
    len = std::clamp(len, 1, longest);
    SequenceChunk chunk;
    chunk.num_new_tokens = len;
    chunk.block_table.assign(static_cast<size_t>((len + kBlockSize - 1) / kBlockSize), 0);
    chunk.wants_logits = true;
    batch.sequences.push_back(std::move(chunk));
    batch.token_ids.insert(batch.token_ids.end(), static_cast<size_t>(len), 0);
  }
  CandidateRequest request;
  request.k = Backend::kMaxCandidates;
  request.listed_starts.assign(static_cast<size_t>(num_seqs) + 1, 0);
  request.log_sum_exp = true;
  request.mask_rows.resize(static_cast<size_t>(num_seqs));
  std::iota(request.mask_rows.begin(), request.mask_rows.end(), 0);
  request.masks.assign(static_cast<size_t>(num_seqs * mask_words(model.info().vocab_size)), ~uint32_t{0});
  Candidates candidates;
  if (absl::Status s = model.forward_candidates(batch, request, candidates); !s.ok())
    return absl::Status(s.code(), absl::StrCat("the dry run at the largest step (", batch.token_ids.size(), " tokens, ",
                                               num_seqs, " sequences) failed: ", s.message()));
  return absl::OkStatus();
}

}  // namespace

void RequestHandle::abort() {
  request_->abort_requested = true;
  if (wake_) wake_();
}

absl::StatusOr<int32_t> plan_kv_cache_blocks(const CausalLM& model, const EngineOptions& options,
                                             int64_t reclaimable_bytes) {
  const int64_t block_bytes = model.info().kv_bytes_per_token * kBlockSize;
  BM_CHECK(block_bytes > 0);
  int64_t budget = options.kv_cache_bytes;
  std::string source = "--kv-cache-bytes";
  if (budget <= 0 && model.backend_name() == "cpu") {
    // Host memory is shared with everything else: a quarter of what is available, at most 4 GiB.
    budget = std::min(model.device_memory_free_bytes() / 4, 4 * kGiB);
    source = "a quarter of the available host memory";
  } else if (budget <= 0) {
    // The weights and the activations of the largest step (grown by a dry run, see grow_activations_to_peak)
    // are already on the device; what `utilization` leaves beyond them goes to the cache, less a little for
    // buffers that grow with context length (the split-sequence attention's partial results).
    const int64_t total = model.device_memory_total_bytes();
    const int64_t used = total - model.device_memory_free_bytes() - reclaimable_bytes;
    // The vision tower's activations are allocated per encode, so what the largest image may take is kept free too.
    const int64_t headroom = kGiB / 4 + model.media_activation_bytes();
    budget = static_cast<int64_t>(static_cast<double>(total) * options.gpu_memory_utilization) - used - headroom;
    source = absl::StrCat("--gpu-memory-utilization ", options.gpu_memory_utilization, " of ", gib(total), " with ",
                          gib(used), " in use (weights and activations) and ", gib(headroom), " kept free",
                          model.media_activation_bytes() > 0 ? " (with the vision tower's largest encode)" : "");
  }
  const int64_t blocks = std::min<int64_t>(budget / block_bytes, int64_t{1} << 30);
  if (blocks < 1)
    return absl::ResourceExhaustedError(absl::StrCat("no room for the KV cache: ", source, " leaves ",
                                                     gib(std::max<int64_t>(budget, 0)), ", and one block of ",
                                                     kBlockSize, " tokens needs ", block_bytes, " bytes"));
  return static_cast<int32_t>(blocks);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::load(const std::filesystem::path& model_dir,
                                                     const EngineOptions& options) {
  auto progress = [&](const std::string& phase, double fraction) {
    if (options.on_progress) options.on_progress(phase, fraction);
  };
  absl::StatusOr<ModelConfig> config = read_model_config(model_dir);
  if (!config.ok()) return config.status();
  absl::StatusOr<GenerationConfig> generation = read_generation_config(model_dir);
  if (!generation.ok()) return generation.status();
  if (generation->eos_token_ids.empty()) generation->eos_token_ids = config->eos_token_ids;
  progress("reading weights", -1);
  LoadOptions load_options;
  load_options.backend = options.backend;
  load_options.num_threads = options.num_threads;
  load_options.tensor_parallel_size = options.tensor_parallel_size;
  load_options.kv_cache_dtype = options.kv_cache_dtype;
  load_options.device_index = options.device_index;
  load_options.devices = options.devices;
  absl::StatusOr<std::unique_ptr<CausalLM>> model = load_causal_lm(model_dir, load_options);
  if (!model.ok()) return model.status();
  progress("allocating KV cache", -1);
  return create(*std::move(model), *std::move(generation), options);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::create(std::unique_ptr<CausalLM> model, GenerationConfig generation,
                                                       const EngineOptions& options) {
  if (options.max_num_seqs < 1) return absl::InvalidArgumentError("max_num_seqs must be at least 1");
  if (options.max_num_batched_tokens < 0)
    return absl::InvalidArgumentError("max_num_batched_tokens must not be negative");
  const bool graphs_wanted = options.decode_graphs == DecodeGraphMode::kOn ||
                             (options.decode_graphs == DecodeGraphMode::kAuto && model->backend_name() != "cpu");
  if (graphs_wanted) {
    // Before the dry run: the graphs' activations are part of what the KV planning must leave room for.
    const absl::Status s = model->enable_decode_graphs(options.max_num_seqs);
    if (!s.ok() && (options.decode_graphs == DecodeGraphMode::kOn || !absl::IsUnimplemented(s))) return s;
  }
  int64_t dry_run_cache_bytes = 0;  // the one-block cache of the dry run, replaced by the real one below
  if (model->backend_name() != "cpu") {
    if (absl::Status s = grow_activations_to_peak(*model, scheduler_options_for(options, model->backend_name()));
        !s.ok())
      return s;
    dry_run_cache_bytes = kBlockSize * model->info().kv_bytes_per_token;
  }
  absl::StatusOr<int32_t> num_blocks = plan_kv_cache_blocks(*model, options, dry_run_cache_bytes);
  if (!num_blocks.ok()) return num_blocks.status();
  const int64_t capacity = int64_t{*num_blocks} * kBlockSize;
  const int32_t context = model->info().max_position_embeddings;
  int32_t max_model_len = options.max_model_len;
  if (max_model_len > context)
    return absl::InvalidArgumentError(absl::StrCat("max_model_len ", max_model_len,
                                                   " is longer than the model's context of ", context,
                                                   " tokens (max_position_embeddings)"));
  if (max_model_len > capacity)
    return absl::ResourceExhaustedError(absl::StrCat("max_model_len ", max_model_len,
                                                     " does not fit the KV cache, which holds ", capacity,
                                                     " tokens; lower --max-model-len or give the cache more memory"));
  if (max_model_len <= 0) max_model_len = static_cast<int32_t>(std::min<int64_t>(context, capacity));
  if (absl::Status s = model->allocate_kv_cache(*num_blocks); !s.ok()) return s;
  if (graphs_wanted) {
    // The common decode shapes are captured now, so that no request waits for a capture mid-traffic; bounded, so
    // that a model with many batch sizes and context bounds still starts promptly (the rest are captured lazily).
    if (absl::Status s = model->capture_decode_graphs(kLoadGraphCaptureBudget); !s.ok()) return s;
  }
  return std::unique_ptr<Engine>(
      new Engine(std::move(model), std::move(generation), *num_blocks, max_model_len, options));
}

Engine::Engine(std::unique_ptr<CausalLM> model, GenerationConfig generation, int32_t num_blocks, int32_t max_model_len,
               const EngineOptions& options)
    : model_(std::move(model)),
      generation_(std::move(generation)),
      max_model_len_(max_model_len),
      scheduler_options_(scheduler_options_for(options, model_->backend_name())),
      blocks_(num_blocks, options.enable_prefix_caching),
      scheduler_(scheduler_options_, blocks_),
      runner_(*model_),
      sampler_(model_->info().vocab_size, generation_.eos_token_ids),
      batch_sampler_(sampler_, options.num_threads),
      use_candidates_(options.sample_from_candidates),
      top_p_from_candidates_(options.top_p_from_candidates.value_or(model_->backend_name() != "cpu")),
      grammar_from_candidates_(options.grammar_from_candidates.value_or(model_->backend_name() != "cpu")),
      seed_rng_(options.seed),
      inbox_(std::make_shared<Inbox>()) {
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  BM_CHECK(!on_engine_thread());  // it would join itself; see engine.h
  {
    std::lock_guard<std::mutex> lock(inbox_->mutex);
    inbox_->stopping = true;
  }
  inbox_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<RequestHandle>> Engine::submit(std::vector<int32_t> prompt_ids,
                                                              const SamplingParams& params, OutputCallback on_output,
                                                              std::shared_ptr<const PromptMedia> media) {
  const int32_t vocab = model_->info().vocab_size;
  if (prompt_ids.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t id : prompt_ids)
    if (id < 0 || id >= vocab)
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token ", id, " is outside the vocabulary [0, ", vocab, ")"));
  if (static_cast<int64_t>(prompt_ids.size()) >= max_model_len_)
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", prompt_ids.size(),
                                                   " tokens; this model is served with ", max_model_len_,
                                                   " tokens of context, which must leave room for at least one more"));
  if (absl::Status s = validate_sampling_params(params, vocab); !s.ok()) return s;
  // Pure and thread-safe: the pad runs checked against the media, the M-RoPE rows computed off the engine thread.
  absl::StatusOr<std::shared_ptr<SequenceMedia>> prepared = model_->prepare_media(prompt_ids, media.get());
  if (!prepared.ok()) return prepared.status();
  if (failed()) return absl::UnavailableError(failure());
  auto request = std::make_shared<Request>();
  if (*prepared != nullptr) {
    request->media = *std::move(prepared);
    request->media_input = std::move(media);
  }
  request->params = params;
  request->on_output = std::move(on_output);
  request->num_unfinished = params.n;
  std::vector<std::unique_ptr<Sequence>> sequences;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    request->id = next_id_;
    const uint64_t base_seed = params.seed ? *params.seed : seed_rng_();
    for (int32_t i = 0; i < params.n; ++i) {
      // Samples of a seeded request differ from each other but not between runs.
      auto seq = std::make_unique<Sequence>(next_id_++, i, request, prompt_ids, base_seed + 0x9e3779b97f4a7c15ULL * i);
      if (i > 0) seq->prefill_leader_id = request->id;
      sequences.push_back(std::move(seq));
    }
  }
  {
    std::lock_guard<std::mutex> lock(inbox_->mutex);
    if (inbox_->stopping) return absl::UnavailableError("the engine is shutting down");
    for (auto& seq : sequences) inbox_->submitted.push_back(std::move(seq));
  }
  inbox_->cv.notify_all();
  std::weak_ptr<Inbox> inbox = inbox_;
  return std::make_unique<RequestHandle>(request, [inbox] {
    if (auto box = inbox.lock()) {
      {
        std::lock_guard<std::mutex> lock(box->mutex);
        box->abort_requested = true;
      }
      box->cv.notify_all();
    }
  });
}

absl::Status Engine::media_support() const {
  return model_->media_support();
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.num_kv_blocks = blocks_.num_blocks();
  s.kv_capacity_tokens = int64_t{s.num_kv_blocks} * kBlockSize;
  s.num_kv_blocks_in_use = stat_blocks_in_use_;
  s.num_running = stat_running_;
  s.num_waiting = stat_waiting_;
  s.num_preemptions = stat_preemptions_;
  s.num_steps = stat_steps_;
  s.media_encoded = stat_media_encoded_;
  s.media_cache_hits = stat_media_cache_hits_;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s.decode_graphs = stat_decode_graphs_;
  }
  if (failed()) s.failure = failure();
  return s;
}

int32_t Engine::max_concurrency(int32_t prompt_tokens, int32_t completion_tokens) const {
  const int32_t per_request = BlockManager::blocks_for(prompt_tokens + completion_tokens);
  if (per_request <= 0) return 0;
  return std::min(blocks_.num_blocks() / per_request, scheduler_options_.max_num_seqs);
}

// ---- the engine thread

void Engine::loop() {
  while (wait_for_work()) {
    try {
      step();
    } catch (const std::exception& e) {
      // A bug or an allocation failure mid-step (an output callback included): the step's state is unknown, so
      // the engine serves nothing more and says why, as on a device fault. The process goes on.
      fail_after_exception(e.what());
    } catch (...) {
      fail_after_exception("a non-standard exception");
    }
  }
  try {
    for (Sequence* seq : scheduler_.sequences()) finish(seq, FinishReason::kAbort);
  } catch (...) {
    // Ending anyway; a callback that throws while the engine stops loses only its own last event.
  }
}

void Engine::fail_after_exception(const std::string& what) {
  try {
    fail_engine(absl::InternalError(absl::StrCat("a step threw: ", what)));
  } catch (...) {
    failed_ = true;  // a callback threw again while its sequence was ended; the engine is failed all the same
  }
}

// Blocks until there is something to do; false when the engine is stopping.
bool Engine::wait_for_work() {
  std::unique_lock<std::mutex> lock(inbox_->mutex);
  inbox_->cv.wait(lock, [&] {
    return inbox_->stopping || !inbox_->submitted.empty() || inbox_->abort_requested || scheduler_.has_work();
  });
  if (inbox_->stopping) {
    for (auto& seq : inbox_->submitted) scheduler_.add(std::move(seq));  // so that loop() ends them as aborted
    inbox_->submitted.clear();
    return false;
  }
  return true;
}

void Engine::step() {
  admit_submissions();
  finish_aborted();
  ScheduledBatch batch = scheduler_.schedule();
  if (batch.empty()) {
    // Only a lone sequence bigger than the whole cache gets here, and submit() keeps those out.
    for (Sequence* seq : scheduler_.sequences())
      finish(seq, FinishReason::kError, "the request does not fit the KV cache");
    publish_stats();
    return;
  }
  // Rows whose settings allow it come back as sampling candidates, not whole rows of the vocabulary.
  std::vector<Sequence*> sampled;  // in logits-row order
  for (const ScheduledChunk& c : batch.chunks)
    if (c.wants_logits) sampled.push_back(c.seq);
  std::vector<SampledToken> tokens;
  // The forward is issued first: planning the candidates (listed ids, grammar masks, temperatures) is host work
  // that needs nothing from it, done while a device runs the step (on the CPU the step has run by then).
  absl::Status s = runner_.begin(batch);
  if (s.ok() && use_candidates_ &&
      batch_sampler_.plan_candidates(sampled, candidate_request_, top_p_from_candidates_, grammar_from_candidates_)) {
    s = runner_.finish(candidate_request_, candidates_);
    if (s.ok()) batch_sampler_.sample(candidates_, candidate_request_, sampled, tokens, unsettled_);
    // Top-p rows whose nucleus reaches past the candidates: their whole rows, still on the device.
    if (s.ok() && !unsettled_.empty()) s = model_->last_logits_rows(unsettled_, logits_);
    if (s.ok() && !unsettled_.empty())
      batch_sampler_.sample_unsettled(logits_, candidates_, candidate_request_, sampled, unsettled_, tokens);
  } else if (s.ok()) {
    s = runner_.finish(logits_);
    if (s.ok()) batch_sampler_.sample(logits_, sampled, tokens);
  }
  if (!s.ok()) {
    // Internal is a device fault (Backend::device_status): the device cannot be used again, so nothing can run.
    if (absl::IsInternal(s))
      fail_engine(s);
    else
      fail(batch, std::string(s.message()));
  } else {
    scheduler_.mark_computed(batch);
    append_tokens(sampled, tokens);
  }
  ++stat_steps_;
  publish_stats();
}

void Engine::admit_submissions() {
  std::vector<std::unique_ptr<Sequence>> submitted;
  {
    std::lock_guard<std::mutex> lock(inbox_->mutex);
    submitted.swap(inbox_->submitted);
  }
  std::vector<Sequence*> added;
  for (auto& seq : submitted) {
    added.push_back(seq.get());
    scheduler_.add(std::move(seq));
  }
  if (failed()) {
    for (Sequence* seq : scheduler_.sequences()) finish(seq, FinishReason::kError, failure());
    return;
  }
  encode_media(added);
}

// Before a multimodal prompt's first prefill, once per request (its n sequences share it): every image and video of
// the requests just admitted, from the encoder cache or through the vision tower — together, in passes of at most
// kMaxPatchesPerEncode patches (small images batched make wider GEMMs; the bound keeps the tower's activations, ~77
// KB per patch with the 3B's config, near a gigabyte), an image that appears twice encoded once. The pixels are let
// go once encoded; a failed pass ends the requests that needed it, with the error.
void Engine::encode_media(const std::vector<Sequence*>& added) {
  constexpr int64_t kMaxPatchesPerEncode = 16384;
  struct Wanted {
    Request* request;
    size_t item;
  };
  std::vector<Request*> requests;
  std::vector<Wanted> wanted;
  std::unordered_map<uint64_t, size_t> first_of_hash;  // into wanted
  std::vector<std::vector<size_t>> same_as;              // per wanted: later items with its hash
  for (Sequence* seq : added) {
    Request& request = seq->request();
    if (request.media == nullptr || request.media_input == nullptr ||
        std::find(requests.begin(), requests.end(), &request) != requests.end())
      continue;
    requests.push_back(&request);
    std::vector<SequenceMedia::Item>& items = request.media->items;
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i].embeddings != nullptr) continue;
      if (EncoderCache::Embeddings hit = encoder_cache_.find(items[i].hash)) {
        items[i].embeddings = std::move(hit);
        ++stat_media_cache_hits_;
      } else if (auto it = first_of_hash.find(items[i].hash); it != first_of_hash.end()) {
        same_as[it->second].push_back(wanted.size());
        wanted.push_back({&request, i});
        same_as.emplace_back();
      } else {
        first_of_hash.emplace(items[i].hash, wanted.size());
        wanted.push_back({&request, i});
        same_as.emplace_back();
      }
    }
  }
  std::vector<std::string> failures(wanted.size());
  for (size_t begin = 0; begin < wanted.size();) {
    // One pass: the next distinct items while they fit the bound (always at least one).
    std::vector<size_t> pass;
    std::vector<const MediaItem*> items;
    int64_t patches = 0;
    size_t end = begin;
    for (; end < wanted.size(); ++end) {
      const Wanted& w = wanted[end];
      if (first_of_hash.at(w.request->media->items[w.item].hash) != end) continue;  // a repeat: copied below
      const MediaItem& item = w.request->media_input->items[w.item];
      if (!items.empty() && patches + item.grid.num_patches() > kMaxPatchesPerEncode) break;
      patches += item.grid.num_patches();
      pass.push_back(end);
      items.push_back(&item);
    }
    if (items.empty()) break;  // only repeats were left, all settled with their first
    absl::StatusOr<std::vector<std::vector<float>>> embeddings = model_->encode_media(items);
    for (size_t k = 0; k < pass.size(); ++k) {
      const size_t at = pass[k];
      std::vector<size_t> targets = same_as[at];
      targets.insert(targets.begin(), at);
      if (!embeddings.ok()) {
        for (size_t t : targets)
          failures[t] = absl::StrCat("encoding image or video ", wanted[t].item, " failed: ", embeddings.status().message());
        continue;
      }
      auto shared = std::make_shared<const std::vector<float>>(std::move((*embeddings)[k]));
      ++stat_media_encoded_;
      encoder_cache_.insert(wanted[at].request->media->items[wanted[at].item].hash, shared);
      for (size_t t : targets) wanted[t].request->media->items[wanted[t].item].embeddings = shared;
    }
    begin = end;
  }
  for (Request* request : requests) {
    std::string error;
    for (size_t t = 0; t < wanted.size(); ++t)
      if (wanted[t].request == request && !failures[t].empty()) error = failures[t];
    if (error.empty()) {
      request->media_input.reset();
      continue;
    }
    for (Sequence* seq : added)
      if (&seq->request() == request) finish(seq, FinishReason::kError, error);
  }
}

void Engine::fail_engine(const absl::Status& fault) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    failure_ =
        absl::StrCat("the engine failed and must be restarted (bmserver chat stop, then serve): ", fault.message());
  }
  failed_ = true;
  for (Sequence* seq : scheduler_.sequences()) finish(seq, FinishReason::kError, failure());
}

std::string Engine::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void Engine::finish_aborted() {
  {
    std::lock_guard<std::mutex> lock(inbox_->mutex);
    if (!inbox_->abort_requested) return;
    inbox_->abort_requested = false;
  }
  for (Sequence* seq : scheduler_.sequences())
    if (seq->request().abort_requested) finish(seq, FinishReason::kAbort);
}

void Engine::append_tokens(const std::vector<Sequence*>& sampled, std::vector<SampledToken>& tokens) {
  for (size_t i = 0; i < sampled.size(); ++i) {
    Sequence* seq = sampled[i];
    SampledToken& token = tokens[i];
    if (seq->matcher) {
      const bool ends = sampler_.is_eos(token.token_id) ||
                        std::find(seq->params().stop_token_ids.begin(), seq->params().stop_token_ids.end(),
                                  token.token_id) != seq->params().stop_token_ids.end();
      if (!(ends ? seq->matcher->accept_end() : seq->matcher->accept_token(token.token_id))) {
        // The mask allows only what the matcher accepts, so this is a bug, reported rather than streamed on.
        finish(seq, FinishReason::kError,
               absl::StrCat("internal error: token ", token.token_id, " does not follow the request's grammar"));
        continue;
      }
    }
    seq->append_token(token.token_id);
    seq->pending.new_token_ids.push_back(token.token_id);
    if (token.logprob) seq->pending.logprobs.push_back(*std::move(token.logprob));
    if (std::optional<FinishReason> reason = stop_reason(*seq, token.token_id))
      finish(seq, *reason);
    else
      deliver(seq);
  }
}

std::optional<FinishReason> Engine::stop_reason(const Sequence& seq, int32_t token_id) const {
  const SamplingParams& p = seq.params();
  if (seq.num_output_tokens() >= p.min_tokens) {
    if (!p.ignore_eos && sampler_.is_eos(token_id)) return FinishReason::kStop;
    if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token_id) != p.stop_token_ids.end())
      return FinishReason::kStop;
  }
  // A complete text that nothing may extend (a closed JSON value): stop without waiting for end-of-sequence.
  if (seq.matcher && seq.matcher->is_terminated()) return FinishReason::kStop;
  if (seq.num_output_tokens() >= p.max_tokens || seq.num_tokens() >= max_model_len_) return FinishReason::kLength;
  return std::nullopt;
}

void Engine::fail(const ScheduledBatch& batch, const std::string& error) {
  for (const ScheduledChunk& c : batch.chunks) finish(c.seq, FinishReason::kError, error);
}

void Engine::finish(Sequence* seq, FinishReason reason, std::string error) {
  seq->pending.finish = reason;
  seq->pending.error = std::move(error);
  SequenceOutput last = take_output(seq);
  std::shared_ptr<Request> request = seq->shared_request();
  const bool request_done = --request->num_unfinished == 0;
  // Blocks are free and the figures current before the caller hears of the end.
  scheduler_.remove(seq);
  publish_stats();
  // The callback usually owns whoever holds the RequestHandle (which owns the Request): after the request's last
  // output it is dropped, which breaks that cycle.
  OutputCallback callback = request_done ? std::move(request->on_output) : request->on_output;
  if (callback) callback(std::move(last));
}

void Engine::deliver(Sequence* seq) {
  if (seq->pending.new_token_ids.empty() && !seq->pending.finish) return;
  SequenceOutput out = take_output(seq);
  if (seq->request().on_output) seq->request().on_output(std::move(out));
}

SequenceOutput Engine::take_output(Sequence* seq) {
  SequenceOutput& pending = seq->pending;
  pending.num_cached_prompt_tokens = seq->num_cached_prompt_tokens;
  SequenceOutput out = std::move(pending);
  pending = SequenceOutput{};
  pending.index = seq->index();
  pending.num_prompt_tokens = seq->num_prompt_tokens();
  return out;
}

void Engine::publish_stats() {
  size_t inbox_size;
  {
    std::lock_guard<std::mutex> lock(inbox_->mutex);
    inbox_size = inbox_->submitted.size();
  }
  stat_blocks_in_use_ = blocks_.num_used_blocks();
  stat_running_ = scheduler_.num_running();
  stat_waiting_ = scheduler_.num_waiting() + static_cast<int32_t>(inbox_size);
  stat_preemptions_ = scheduler_.num_preemptions();
  DecodeGraphStats graphs = model_->decode_graph_stats();
  std::lock_guard<std::mutex> lock(mutex_);
  stat_decode_graphs_ = std::move(graphs);
}

}  // namespace bm::engine
