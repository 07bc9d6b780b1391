// Speed of a backend (the CUDA one by default) on random-weight models with real shapes, against its floors:
//   - single-stream decode tokens/s vs the bandwidth ceiling: a batch-1 step reads every weight once, except an
//     untied input-embedding table of which it reads only the looked-up row, so it cannot beat
//     (measured device copy bandwidth) / (CausalLMInfo::decode_read_bytes);
//   - prefill of 1k and 8k tokens (one sequence, one step) vs the FLOP floor: 2·params·tokens for the GEMMs plus
//     the causal attention products (2·2·layers·heads·head_dim·tokens²/2), at --peak-tflops;
//   - batched decode throughput with 64 and 256 sequences of --context tokens each.
// Each step samples as the engine does: the next token's candidates (k = 1, greedy) come back, not whole rows of
// logits. Single-stream decode is measured op by op (eager) and replayed from decode graphs (CUDA graphs), which
// the batched figures use too unless --eager is given.
// Every figure is the median of --repeats timed runs after a warm-up (cuBLASLt picks algorithms and scratch
// grows on the first calls). Prints figures; asserts nothing.
//
// Usage: bm_cuda_backend_bench [--model qwen2.5-0.5b|qwen2.5-7b|llama-8b] [--layers L] [--backend cuda|cpu]
//                              [--decode-steps N] [--context C] [--repeats R] [--peak-tflops T] [--keep DIR]
//                              [--eager 1]
// --layers trims the depth (all other shapes stay real) to fit a short GPU session; the ceilings are computed
// from the trimmed model's own bytes and FLOPs, so the ratios stay meaningful.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/backend/cuda_plugin.h"
#include "engine/models/model_loader.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace {

namespace fs = std::filesystem;
using bm::engine::CausalLM;
using bm::engine::ForwardBatch;
using bm::engine::SequenceChunk;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model = "qwen2.5-0.5b";
  int32_t layers = 0;  // 0: the model's
  std::string backend = "cuda";
  int32_t decode_steps = 64;
  int32_t context = 512;
  int32_t repeats = 3;
  double peak_tflops = 989.0;  // H100/H200 SXM dense bf16
  std::string keep;
  bool eager = false;  // no decode graphs
};

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const char* v = argv[i + 1];
    if (arg == "--model")
      o.model = v;
    else if (arg == "--layers")
      o.layers = std::atoi(v);
    else if (arg == "--backend")
      o.backend = v;
    else if (arg == "--eager")
      o.eager = std::atoi(v) != 0;
    else if (arg == "--decode-steps")
      o.decode_steps = std::atoi(v);
    else if (arg == "--context")
      o.context = std::atoi(v);
    else if (arg == "--repeats")
      o.repeats = std::max(1, std::atoi(v));
    else if (arg == "--peak-tflops")
      o.peak_tflops = std::atof(v);
    else if (arg == "--keep")
      o.keep = v;
    else
      return false;
  }
  return argc % 2 == 1;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int32_t token(int64_t i, int32_t vocab) {
  return static_cast<int32_t>((i * 7919 + 13) % (vocab - 100));
}

// Blocks [first, first + count) as a table.
std::vector<int32_t> blocks(int32_t first, int32_t count) {
  std::vector<int32_t> table(static_cast<size_t>(count));
  std::iota(table.begin(), table.end(), first);
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: %s [--model qwen2.5-0.5b|qwen2.5-7b|llama-8b] [--layers L] [--backend cuda|cpu] "
                 "[--decode-steps N] [--context C] [--repeats R] [--peak-tflops T] [--keep DIR]\n",
                 argv[0]);
    return 2;
  }
  bm::engine::testing::RandomCheckpointShape shape;
  if (o.model == "qwen2.5-0.5b") {
    shape = {"Qwen2ForCausalLM", 896, 4864, 24, 14, 2, 151936, true};
  } else if (o.model == "qwen2.5-7b") {
    shape = {"Qwen2ForCausalLM", 3584, 18944, 28, 28, 4, 152064, false};
  } else if (o.model == "llama-8b") {
    shape = {"LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128256, false};
  } else {
    std::fprintf(stderr, "unknown --model %s\n", o.model.c_str());
    return 2;
  }
  if (o.layers > 0) shape.num_layers = o.layers;
  const int64_t head_dim = shape.hidden_size / shape.num_heads;

  const bool temporary = o.keep.empty();
  const fs::path dir =
      temporary ? fs::temp_directory_path() / ("bm-cuda-bench-" + std::to_string(::getpid())) : fs::path(o.keep);
  auto start = Clock::now();
  if (!fs::exists(dir / "model.safetensors")) {
    if (!bm::engine::testing::write_random_checkpoint(dir, shape)) {
      std::fprintf(stderr, "cannot write the checkpoint to %s\n", dir.c_str());
      return 1;
    }
    std::printf("wrote a random %s checkpoint (%d layers) to %s in %.1f s\n", o.model.c_str(), shape.num_layers,
                dir.c_str(), seconds_since(start));
  }
  bm::engine::LoadOptions load_options;
  load_options.backend = o.backend;
  start = Clock::now();
  absl::StatusOr<std::unique_ptr<CausalLM>> loaded = bm::engine::load_causal_lm(dir, load_options);
  if (temporary) fs::remove_all(dir);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load failed: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  CausalLM& lm = **loaded;
  const double weight_bytes = static_cast<double>(lm.info().weight_bytes);
  const double decode_bytes = static_cast<double>(lm.info().decode_read_bytes);
  std::printf(
      "%s on %s: loaded in %.1f s; %d layers, %.2f GB of weights (%.2f GB read per decode step), KV %lld "
      "bytes/token\n",
      o.model.c_str(), o.backend.c_str(), seconds_since(start), lm.info().num_layers, weight_bytes / 1e9,
      decode_bytes / 1e9, static_cast<long long>(lm.info().kv_bytes_per_token));

  double bandwidth_gb_s = 0.0;
  if (o.backend == "cuda") {
    absl::StatusOr<double> bandwidth = bm::engine::measure_cuda_copy_bandwidth(0);
    if (bandwidth.ok()) bandwidth_gb_s = *bandwidth;
    std::printf("device copy bandwidth (read + write): %.0f GB/s%s\n", bandwidth_gb_s,
                bandwidth.ok() ? "" : (" — " + bandwidth.status().ToString()).c_str());
  }

  // KV blocks: enough for 256 sequences of context + decode steps, or one 8k prefill.
  const int32_t per_seq = (o.context + o.decode_steps + 1 + bm::engine::kBlockSize - 1) / bm::engine::kBlockSize;
  const int32_t prefill_blocks = (8192 + 128 + o.decode_steps + bm::engine::kBlockSize - 1) / bm::engine::kBlockSize;
  const int32_t num_blocks = std::max(256 * per_seq, prefill_blocks);
  if (absl::Status status = lm.allocate_kv_cache(num_blocks); !status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  const int32_t vocab = lm.info().vocab_size;
  bm::engine::CandidateRequest greedy;
  bm::engine::Candidates candidates;
  auto run = [&](const ForwardBatch& batch) {
    int32_t rows = 0;
    for (const SequenceChunk& c : batch.sequences) rows += c.wants_logits ? 1 : 0;
    greedy.listed_starts.assign(static_cast<size_t>(rows) + 1, 0);
    if (absl::Status status = lm.forward_candidates(batch, greedy, candidates); !status.ok()) {
      std::fprintf(stderr, "forward failed: %s\n", status.ToString().c_str());
      std::exit(1);
    }
  };

  // ---- single-stream decode after a 128-token prompt, op by op and then from decode graphs
  for (const bool graphs : {false, true}) {
    if (graphs && o.eager) break;
    if (graphs) {
      if (absl::Status status = lm.enable_decode_graphs(256); !status.ok()) {
        std::fprintf(stderr, "decode graphs: %s\n", status.ToString().c_str());
        return 1;
      }
    }
    std::vector<double> rates;
    for (int32_t r = 0; r <= o.repeats; ++r) {
      ForwardBatch prefill;
      for (int32_t i = 0; i < 128; ++i) prefill.token_ids.push_back(token(i, vocab));
      prefill.sequences = {SequenceChunk{0, 128, blocks(0, prefill_blocks), true}};
      run(prefill);
      const auto t0 = Clock::now();
      for (int32_t step = 0; step < o.decode_steps; ++step) {
        run(ForwardBatch{{token(128 + step, vocab)}, {SequenceChunk{128 + step, 1, blocks(0, prefill_blocks), true}}});
      }
      if (r > 0) rates.push_back(o.decode_steps / seconds_since(t0));  // r == 0 warms up
    }
    const double rate = median(rates);
    std::printf("single-stream decode (%s): %.1f tokens/s (%.2f ms/token)", graphs ? "decode graphs" : "eager", rate,
                1e3 / rate);
    if (bandwidth_gb_s > 0) {
      const double ceiling = bandwidth_gb_s * 1e9 / decode_bytes;
      std::printf("; bandwidth ceiling %.1f tokens/s (copy bandwidth / weights read per step); %.0f%% of it", ceiling,
                  100.0 * rate / ceiling);
    }
    std::printf("\n");
  }

  // ---- prefill of 1k and 8k tokens in one step
  const double params_per_token = weight_bytes / 2.0 - double(vocab) * shape.hidden_size;  // minus the lookup table
  for (int32_t tokens : {1024, 8192}) {
    std::vector<double> times;
    for (int32_t r = 0; r <= o.repeats; ++r) {
      ForwardBatch batch;
      for (int32_t i = 0; i < tokens; ++i) batch.token_ids.push_back(token(i, vocab));
      batch.sequences = {SequenceChunk{0, tokens, blocks(0, prefill_blocks), true}};
      const auto t0 = Clock::now();
      run(batch);
      if (r > 0) times.push_back(seconds_since(t0));
    }
    const double seconds = median(times);
    // GEMMs over every token (the lm_head only for the last one; a small overcount for tied models) plus the
    // causal QKᵀ and PV products.
    const double flops = 2.0 * params_per_token * tokens +
                         2.0 * 2.0 * shape.num_layers * shape.num_heads * head_dim * double(tokens) * tokens / 2.0;
    const double floor_s = flops / (o.peak_tflops * 1e12);
    std::printf(
        "prefill %5d tokens: %.1f ms (%.0f tokens/s, %.0f TFLOP/s); FLOP floor %.1f ms at %.0f TFLOP/s; "
        "%.0f%% of peak\n",
        tokens, seconds * 1e3, tokens / seconds, flops / seconds / 1e12, floor_s * 1e3, o.peak_tflops,
        100.0 * floor_s / seconds);
  }

  // ---- batched decode
  for (int32_t num_seqs : {64, 256}) {
    // Prefill every sequence's context, at most 8192 tokens per step.
    std::vector<SequenceChunk> seqs(static_cast<size_t>(num_seqs));
    for (int32_t s = 0; s < num_seqs; ++s) seqs[s].block_table = blocks(s * per_seq, per_seq);
    ForwardBatch batch;
    for (int32_t s = 0; s < num_seqs; ++s) {
      SequenceChunk chunk = seqs[s];
      chunk.num_new_tokens = o.context;
      chunk.wants_logits = true;
      for (int32_t i = 0; i < o.context; ++i) batch.token_ids.push_back(token(s * 1000 + i, vocab));
      batch.sequences.push_back(chunk);
      if (static_cast<int32_t>(batch.token_ids.size()) + o.context > 8192 || s + 1 == num_seqs) {
        run(batch);
        batch = ForwardBatch{};
      }
    }
    std::vector<double> rates;
    int32_t position = o.context;
    const int32_t steps_per_repeat = std::max(1, o.decode_steps / (o.repeats + 1));
    for (int32_t r = 0; r <= o.repeats; ++r) {
      const auto t0 = Clock::now();
      for (int32_t step = 0; step < steps_per_repeat; ++step, ++position) {
        ForwardBatch decode;
        for (int32_t s = 0; s < num_seqs; ++s) {
          decode.token_ids.push_back(token(position + s, vocab));
          SequenceChunk chunk = seqs[s];
          chunk.num_cached_tokens = position;
          chunk.num_new_tokens = 1;
          chunk.wants_logits = true;
          decode.sequences.push_back(std::move(chunk));
        }
        run(decode);
      }
      if (r > 0) rates.push_back(double(num_seqs) * steps_per_repeat / seconds_since(t0));
    }
    const double rate = median(rates);
    std::printf("batched decode (%s), %3d sequences of ~%d tokens: %.0f tokens/s (%.1f ms/step)\n",
                o.eager ? "eager" : "decode graphs", num_seqs, o.context, rate, 1e3 * num_seqs / rate);
  }
  const bm::engine::DecodeGraphStats stats = lm.decode_graph_stats();
  std::printf("decode graphs: %lld captured, %lld steps replayed, %lld eager%s%s\n",
              static_cast<long long>(stats.captured), static_cast<long long>(stats.replayed),
              static_cast<long long>(stats.eager),
              stats.disabled.empty() ? "" : "; turned off: ", stats.disabled.c_str());
  return 0;
}
