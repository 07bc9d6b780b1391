// Whole-model check of a backend against transformers: loads a model folder written by make_gpu_checkpoints.py
// (random bf16 weights, real shapes) through the engine (load_causal_lm + CausalLM::forward), runs the recorded
// prompts as one batch (prefill, then decode steps fed with transformers' greedy tokens so that every step is
// compared even after a disagreement), and compares each step's logits with transformers' float32 logits.
//
// Usage: bm_cuda_model_check --model DIR [--backend cuda|cpu] [--tolerance 5e-2] [--min-agreement 0.9]
// DIR/reference/reference.json: {"vocab_size": V, "prompts": [{"ids": [...], "generated": [...],
//   "logits": "logits_0.f32"}]}; logits_i.f32 holds float32 [len(generated), V]: row j is transformers' logits
// after the prompt and generated[0..j).
// Pass: every row's normalised error ||ours - ref||₂ / ||ref||₂ <= tolerance, and our argmax equals the reference
// greedy token in >= min-agreement of the rows. Prints one summary line per prompt; exit status 0 on pass.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "engine/models/model_loader.h"
#include "engine/runtime/engine.h"
#include "nlohmann/json.hpp"

namespace {

namespace fs = std::filesystem;
using bm::engine::CausalLM;
using bm::engine::ForwardBatch;
using bm::engine::SequenceChunk;

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<int32_t> generated;
  std::vector<float> logits;  // [generated.size(), vocab]
};

double normalised_error(const float* ours, const float* ref, int64_t n) {
  double error = 0, norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(ours[i])) return INFINITY;
    error += (double{ours[i]} - ref[i]) * (double{ours[i]} - ref[i]);
    norm += double{ref[i]} * ref[i];
  }
  return std::sqrt(error / std::max(norm, 1e-30));
}

int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

}  // namespace

// Generates one prompt to completion; false (after printing why) on an error.
bool generate(bm::engine::Engine& engine, const std::vector<int32_t>& prompt, const bm::engine::SamplingParams& params,
              std::vector<int32_t>& tokens) {
  std::mutex mutex;
  std::condition_variable cv;
  bool finished = false;
  std::string error;
  tokens.clear();
  auto handle = engine.submit(prompt, params, [&](bm::engine::SequenceOutput out) {
    std::lock_guard<std::mutex> lock(mutex);
    tokens.insert(tokens.end(), out.new_token_ids.begin(), out.new_token_ids.end());
    if (out.finish) {
      finished = true;
      error = out.error;
      cv.notify_all();
    }
  });
  if (!handle.ok()) {
    std::fprintf(stderr, "submit failed: %s\n", handle.status().ToString().c_str());
    return false;
  }
  std::unique_lock<std::mutex> lock(mutex);
  cv.wait(lock, [&] { return finished; });
  if (!error.empty()) {
    std::fprintf(stderr, "generation failed: %s\n", error.c_str());
    return false;
  }
  return true;
}

// Through the whole engine (KV planning with its dry run, scheduler, sampling candidates, sampler): each prompt
// generated greedily on its own, once sampling from candidates (Backend::top_candidates on the device) and once
// from whole rows of logits. Both runs use the same shapes and kernels, so their tokens must be identical; how far
// they follow transformers' greedy continuation is printed (bf16 near-ties make an exact 32-token match a property
// of the weights, not only of the kernels). The engine's load time is the cold start of this model.
//
// A third run steps op by op (--enforce-eager; the first two replay decode graphs on a GPU). Its attention splits
// the context differently (the graphs launch for a context bound), so float sums differ in order and a near-tie
// may flip a late token; a graph that replays stale inputs breaks at the second token. So the check fails only
// when eager and graphed tokens part within the first 8.
//
// The first two runs also sample every prompt with DeepSeek-R1's settings (temperature 0.6, top-p 0.95, no top-k)
// plus a repetition penalty (which lists every seen token, positions the device overwrites during candidate
// selection): from candidates and their tempered mass, fetching a row (and restoring its listed logits) when the
// nucleus reaches past them, and from whole rows. Same logits, same seeds: the tokens must be identical.

bool check_engine(const std::string& model, const std::string& backend, const std::vector<Prompt>& prompts) {
  std::vector<std::vector<int32_t>> runs[3], top_p_runs[2];
  const char* mode_names[3] = {"candidates, decode graphs", "whole rows, decode graphs", "candidates, eager"};
  for (int mode = 0; mode < 3; ++mode) {
    bm::engine::EngineOptions options;
    options.backend = backend;
    options.sample_from_candidates = mode != 1;
    if (mode == 2) options.decode_graphs = bm::engine::DecodeGraphMode::kOff;
    options.max_num_seqs = 8;
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<bm::engine::Engine>> engine = bm::engine::Engine::load(model, options);
    if (!engine.ok()) {
      std::fprintf(stderr, "engine load failed: %s\n", engine.status().ToString().c_str());
      return false;
    }
    const bm::engine::EngineStats stats = (*engine)->stats();
    std::printf("  engine (%s) ready in %.2f s: KV cache %lld tokens, max model len %d\n", mode_names[mode],
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                static_cast<long long>(stats.kv_capacity_tokens), (*engine)->max_model_len());
    for (const Prompt& prompt : prompts) {
      bm::engine::SamplingParams params;
      params.temperature = 0;
      params.ignore_eos = true;
      params.max_tokens = static_cast<int32_t>(prompt.generated.size());
      std::vector<int32_t> tokens;
      if (!generate(**engine, prompt.ids, params, tokens)) return false;
      runs[mode].push_back(tokens);
      if (mode == 2) continue;
      params.temperature = 0.6f;
      params.top_p = 0.95f;
      params.repetition_penalty = 1.1f;
      params.seed = 77 + runs[mode].size();
      if (!generate(**engine, prompt.ids, params, tokens)) return false;
      top_p_runs[mode].push_back(tokens);
    }
    const bm::engine::DecodeGraphStats graphs = (*engine)->stats().decode_graphs;
    std::printf("  engine (%s): decode graphs captured %lld, replayed %lld, eager decode steps %lld%s%s\n",
                mode_names[mode], static_cast<long long>(graphs.captured), static_cast<long long>(graphs.replayed),
                static_cast<long long>(graphs.eager),
                graphs.disabled.empty() ? "" : "; TURNED OFF: ", graphs.disabled.c_str());
  }
  bool pass = true;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const std::vector<int32_t>& ours = runs[0][s];
    size_t follow = 0;
    while (follow < ours.size() && follow < prompts[s].generated.size() && ours[follow] == prompts[s].generated[follow])
      ++follow;
    const bool same = runs[0][s] == runs[1][s];
    size_t eager_agree = 0;
    while (eager_agree < ours.size() && eager_agree < runs[2][s].size() && ours[eager_agree] == runs[2][s][eager_agree])
      ++eager_agree;
    const bool eager_ok = eager_agree >= std::min<size_t>(8, ours.size());
    const bool top_p_same = top_p_runs[0][s] == top_p_runs[1][s];
    pass = pass && same && eager_ok && top_p_same;
    std::printf(
        "  engine greedy, prompt %zu: %zu tokens; candidates and whole rows %s; graphs and eager agree on the first "
        "%zu%s; first %zu of %zu equal transformers'; top-p 0.95 sampling from candidates and whole rows %s%s\n",
        s, ours.size(), same ? "identical" : "DIFFER", eager_agree, eager_ok ? "" : " (<8: FAIL)", follow,
        prompts[s].generated.size(), top_p_same ? "identical" : "DIFFER",
        same && eager_ok && top_p_same ? "" : "  <-- FAIL");
  }
  return pass;
}

int main(int argc, char** argv) {
  std::string model, backend = "cuda";
  double tolerance = 5e-2, min_agreement = 0.9;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--model" && value) {
      model = value;
    } else if (arg == "--backend" && value) {
      backend = value;
    } else if (arg == "--tolerance" && value) {
      tolerance = std::atof(value);
    } else if (arg == "--min-agreement" && value) {
      min_agreement = std::atof(value);
    } else {
      std::fprintf(stderr, "usage: %s --model DIR [--backend cuda|cpu] [--tolerance T] [--min-agreement A]\n", argv[0]);
      return 2;
    }
    ++i;
  }
  if (model.empty()) {
    std::fprintf(stderr, "--model is required\n");
    return 2;
  }
  const fs::path reference_dir = fs::path(model) / "reference";
  std::ifstream in(reference_dir / "reference.json");
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", (reference_dir / "reference.json").c_str());
    return 2;
  }
  const nlohmann::json reference = nlohmann::json::parse(in);
  const int64_t vocab = reference.at("vocab_size").get<int64_t>();
  std::vector<Prompt> prompts;
  for (const nlohmann::json& p : reference.at("prompts")) {
    Prompt prompt;
    prompt.ids = p.at("ids").get<std::vector<int32_t>>();
    prompt.generated = p.at("generated").get<std::vector<int32_t>>();
    prompt.logits.resize(prompt.generated.size() * static_cast<size_t>(vocab));
    std::ifstream logits(reference_dir / p.at("logits").get<std::string>(), std::ios::binary);
    logits.read(reinterpret_cast<char*>(prompt.logits.data()),
                static_cast<std::streamsize>(prompt.logits.size() * sizeof(float)));
    if (!logits) {
      std::fprintf(stderr, "short logits file %s\n", p.at("logits").get<std::string>().c_str());
      return 2;
    }
    prompts.push_back(std::move(prompt));
  }

  const auto start = std::chrono::steady_clock::now();
  bm::engine::LoadOptions options;
  options.backend = backend;
  absl::StatusOr<std::unique_ptr<CausalLM>> loaded = bm::engine::load_causal_lm(model, options);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load failed: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  CausalLM& lm = **loaded;
  std::printf("%s on %s: loaded in %.1f s (%d layers, %.2f GB of weights)\n", model.c_str(), backend.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), lm.info().num_layers,
              lm.info().weight_bytes / 1e9);
  if (lm.info().vocab_size != vocab) {
    std::fprintf(stderr, "vocab %d in the model, %lld in the reference\n", lm.info().vocab_size,
                 static_cast<long long>(vocab));
    return 1;
  }

  // Blocks: each sequence gets its own consecutive run.
  std::vector<SequenceChunk> chunks(prompts.size());
  int32_t next_block = 0;
  size_t max_steps = 0;
  for (size_t s = 0; s < prompts.size(); ++s) {
    const int32_t tokens = static_cast<int32_t>(prompts[s].ids.size() + prompts[s].generated.size());
    for (int32_t b = 0; b < (tokens + bm::engine::kBlockSize - 1) / bm::engine::kBlockSize; ++b) {
      chunks[s].block_table.push_back(next_block++);
    }
    max_steps = std::max(max_steps, prompts[s].generated.size());
  }
  if (absl::Status status = lm.allocate_kv_cache(next_block); !status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  std::vector<double> worst(prompts.size(), 0.0);
  std::vector<double> mean(prompts.size(), 0.0);
  std::vector<int32_t> agree(prompts.size(), 0);
  std::vector<int32_t> rows(prompts.size(), 0);
  std::vector<int32_t> cached(prompts.size(), 0);
  for (size_t step = 0; step < max_steps; ++step) {
    ForwardBatch batch;
    std::vector<size_t> order;
    for (size_t s = 0; s < prompts.size(); ++s) {
      if (step >= prompts[s].generated.size()) continue;
      SequenceChunk chunk = chunks[s];
      chunk.num_cached_tokens = cached[s];
      chunk.wants_logits = true;
      if (step == 0) {
        batch.token_ids.insert(batch.token_ids.end(), prompts[s].ids.begin(), prompts[s].ids.end());
        chunk.num_new_tokens = static_cast<int32_t>(prompts[s].ids.size());
      } else {
        batch.token_ids.push_back(prompts[s].generated[step - 1]);  // teacher forcing with the reference token
        chunk.num_new_tokens = 1;
      }
      cached[s] += chunk.num_new_tokens;
      batch.sequences.push_back(std::move(chunk));
      order.push_back(s);
    }
    std::vector<float> logits;
    if (absl::Status status = lm.forward(batch, logits); !status.ok()) {
      std::fprintf(stderr, "forward failed at step %zu: %s\n", step, status.ToString().c_str());
      return 1;
    }
    for (size_t r = 0; r < order.size(); ++r) {
      const size_t s = order[r];
      const float* ours = logits.data() + r * static_cast<size_t>(vocab);
      const float* ref = prompts[s].logits.data() + step * static_cast<size_t>(vocab);
      const double error = normalised_error(ours, ref, vocab);
      worst[s] = std::max(worst[s], error);
      mean[s] += error;
      rows[s] += 1;
      if (argmax(ours, vocab) == prompts[s].generated[step]) agree[s] += 1;
    }
  }
  loaded->reset();  // frees the device for the engine phase
  bool pass = check_engine(model, backend, prompts);
  for (size_t s = 0; s < prompts.size(); ++s) {
    const double agreement = rows[s] > 0 ? double(agree[s]) / rows[s] : 0.0;
    const bool ok = worst[s] <= tolerance && agreement >= min_agreement;
    pass = pass && ok;
    std::printf(
        "  prompt %zu (%zu tokens): logits normalised error mean %.3e max %.3e (tolerance %.0e); greedy "
        "tokens %d/%d agree%s\n",
        s, prompts[s].ids.size(), mean[s] / std::max(rows[s], 1), worst[s], tolerance, agree[s], rows[s],
        ok ? "" : "  <-- FAIL");
  }
  std::printf("%s: %s\n", model.c_str(), pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
