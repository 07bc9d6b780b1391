#include "engine/backend/cuda/gemm.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

// The largest power of two (up to 256) dividing the address: what cuBLASLt may assume about the operand.
uint32_t alignment_of(const void* pointer) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(pointer);
  uint32_t alignment = 256;
  while (alignment > 1 && address % alignment != 0) alignment /= 2;
  return alignment;
}

}  // namespace

LtGemm::~LtGemm() {
  // Destroy calls only free host memory; their status is not worth aborting over at teardown.
  for (auto& [key, plan] : plans_) {
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatmulDescDestroy(plan.desc);
  }
}

LtGemm::Plan* LtGemm::plan_for(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return &found->second;
  const auto [m, n, k, bf16, align_w, align_x, align_out] = key;
  Plan plan;
  cublasLtMatmulPreference_t preference = nullptr;
  // On any failure: record it (BM_CUBLAS_OK), free what was created, cache nothing.
  auto give_up = [&]() -> Plan* {
    if (preference != nullptr) cublasLtMatmulPreferenceDestroy(preference);
    if (plan.c != nullptr) cublasLtMatrixLayoutDestroy(plan.c);
    if (plan.b != nullptr) cublasLtMatrixLayoutDestroy(plan.b);
    if (plan.a != nullptr) cublasLtMatrixLayoutDestroy(plan.a);
    if (plan.desc != nullptr) cublasLtMatmulDescDestroy(plan.desc);
    return nullptr;
  };
  const cublasOperation_t transpose = CUBLAS_OP_T;
  const cublasOperation_t keep = CUBLAS_OP_N;
  const cudaDataType_t input = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const uint64_t workspace_bytes = workspace_bytes_;
  // Column-major views: A = w as [k, m] (ld k), B = x as [k, n] (ld k), C = D = out as [m, n] (ld m).
  if (!BM_CUBLAS_OK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F)) ||
      !BM_CUBLAS_OK(
          cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof transpose)) ||
      !BM_CUBLAS_OK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof keep)) ||
      !BM_CUBLAS_OK(
          cublasLtMatrixLayoutCreate(&plan.a, input, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k)) ||
      !BM_CUBLAS_OK(
          cublasLtMatrixLayoutCreate(&plan.b, input, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k)) ||
      !BM_CUBLAS_OK(
          cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, static_cast<uint64_t>(m), static_cast<uint64_t>(n), m)) ||
      !BM_CUBLAS_OK(cublasLtMatmulPreferenceCreate(&preference)) ||
      !BM_CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes, sizeof workspace_bytes)) ||
      !BM_CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                         &align_w, sizeof align_w)) ||
      !BM_CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                         &align_x, sizeof align_x)) ||
      !BM_CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                         &align_out, sizeof align_out)) ||
      !BM_CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                         &align_out, sizeof align_out))) {
    return give_up();
  }
  cublasLtMatmulHeuristicResult_t results[kGemmHeuristicCandidates] = {};
  int returned = 0;
  const cublasStatus_t asked = cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.a, plan.b, plan.c, plan.c,
                                                              preference, kGemmHeuristicCandidates, results, &returned);
  // NOT_SUPPORTED here means no algorithm for the shape: the plain kernel takes it (below), not a device fault.
  if (!is_unsupported_shape(asked) && !BM_CUBLAS_OK(asked)) return give_up();
  if (asked == CUBLAS_STATUS_SUCCESS) {
    for (int i : usable_algorithms(results, returned, workspace_bytes_)) {
      plan.algos.push_back(results[i].algo);
      plan.ranks.push_back(i);
    }
  }
  cublasLtMatmulPreferenceDestroy(preference);
  if (plan.algos.empty()) warn_fallback(key, "cuBLASLt offers no algorithm");
  return &plans_.emplace(key, std::move(plan)).first->second;
}

void LtGemm::warn_fallback(const Key& key, const char* why) {
  const auto [m, n, k, bf16, align_w, align_x, align_out] = key;
  std::fprintf(stderr,
               "bmserver: %s for a %s GEMM m=%lld n=%lld k=%lld (alignments %u/%u/%u); it runs on the plain "
               "(slower) kernel\n",
               why, bf16 ? "bf16" : "f32", static_cast<long long>(m), static_cast<long long>(n),
               static_cast<long long>(k), align_w, align_x, align_out);
}

bool LtGemm::log_choices_wanted() {
  const char* value = std::getenv("BMSERVER_LOG_GEMM_CHOICES");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

void LtGemm::run(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out,
                 cudaStream_t stream) {
  BM_CHECK(w != nullptr && x != nullptr && out != nullptr);
  BM_CHECK(m > 0 && n >= 0 && k > 0);
  if (n == 0) return;
  const Key key{m, n, k, bf16, alignment_of(w), alignment_of(x), alignment_of(out)};
  Plan* plan = plan_for(key);
  if (plan == nullptr) return;
  if (!plan->tuned && timing_allowed_ && timed_rows(n) && plan->algos.size() > 1) {
    tune(*plan, key, w, x, out, stream, nullptr);
  }
  run_plan(*plan, key, w, x, m, n, k, out, stream);
}

bool LtGemm::run_small_batch(const void* w, const float* x, uint16_t* x_bf16, int64_t m, int64_t n, int64_t k,
                             WeightPtr bias, float* out, cudaStream_t stream) {
  BM_CHECK(w != nullptr && x != nullptr && x_bf16 != nullptr && out != nullptr);
  BM_CHECK(m > 0 && n >= 1 && n <= kGemvMaxRows && k > 0);
  const Key gemv_key{m, n, k, true, alignment_of(w), alignment_of(x), alignment_of(out)};
  auto chosen = gemv_choice_.find(gemv_key);
  if (chosen != gemv_choice_.end() && chosen->second) {
    launch_gemv_bf16(w, x, m, n, k, bias, out, stream);
    return true;
  }
  launch_f32_to_bf16(x, n * k, x_bf16, stream);
  const Key key{m, n, k, true, alignment_of(w), alignment_of(x_bf16), alignment_of(out)};
  Plan* plan = plan_for(key);
  if (plan == nullptr) return false;
  if (chosen == gemv_choice_.end() && timing_allowed_) {
    // The GEMV candidate includes the bias, as it would run; cuBLASLt's leave it to an add_bias after, which
    // is the same for each of them and so does not change their order.
    const std::function<bool()> gemv = [&] {
      launch_gemv_bf16(w, x, m, n, k, bias, out, stream);
      return cudaPeekAtLastError() == cudaSuccess;
    };
    const bool use_gemv = tune(*plan, key, w, x_bf16, out, stream, &gemv);
    gemv_choice_.emplace(gemv_key, use_gemv);
    gemv_shapes_ += use_gemv ? 1 : 0;
    if (use_gemv) {
      launch_gemv_bf16(w, x, m, n, k, bias, out, stream);
      return true;
    }
  }
  // cuBLASLt: timing chose it, or the shape is first seen during a capture (untimed: the heuristic's order,
  // decided by the next uncaptured call; the captured graph keeps what it recorded).
  run_plan(*plan, key, w, x_bf16, m, n, k, out, stream);
  return false;
}

void LtGemm::run_plan(Plan& plan, const Key& key, const void* w, const void* x, int64_t m, int64_t n, int64_t k,
                      float* out, cudaStream_t stream) {
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const bool bf16 = std::get<3>(key);
  while (plan.next < plan.algos.size()) {
    const cublasStatus_t status =
        cublasLtMatmul(handle_, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, out, plan.c, out, plan.c,
                       &plan.algos[plan.next], workspace_, workspace_bytes_, stream);
    if (status == CUBLAS_STATUS_SUCCESS) return;
    if (!is_unsupported_shape(status)) {
      BM_CUBLAS_OK(status);  // a real failure: recorded
      return;
    }
    // Refused before any work was queued: the next candidate, and the plain kernel after the last.
    if (++plan.next == plan.algos.size()) warn_fallback(key, "cuBLASLt refused every algorithm it offered");
  }
  launch_gemm_fallback(w, x, bf16, m, n, k, out, stream);
}

bool LtGemm::tune(Plan& plan, const Key& key, const void* w, const void* x, float* out, cudaStream_t stream,
                  const std::function<bool()>* extra) {
  plan.tuned = true;  // once per plan, whatever happens below
  if (tuning_ms_ >= kTuningBudgetMs) return false;
  const auto started = std::chrono::steady_clock::now();
  cudaEvent_t begin = nullptr;
  cudaEvent_t end = nullptr;
  if (!BM_CUDA_OK(cudaEventCreate(&begin)) || !BM_CUDA_OK(cudaEventCreate(&end))) {
    if (begin != nullptr) cudaEventDestroy(begin);
    return false;
  }
  const float alpha = 1.0f;
  const float beta = 0.0f;
  bool device_failed = false;
  // ms per call of `call` (which queues one run and says whether it was accepted), or nullopt when refused.
  auto time_calls = [&](const std::function<bool()>& call) -> std::optional<float> {
    for (int i = 0; i < kTuningWarmups; ++i) {
      if (!call()) return std::nullopt;
    }
    if (!BM_CUDA_OK(cudaEventRecord(begin, stream))) {
      device_failed = true;
      return std::nullopt;
    }
    for (int i = 0; i < kTuningIterations; ++i) {
      if (!call()) return std::nullopt;
    }
    float ms = 0.0f;
    if (!BM_CUDA_OK(cudaEventRecord(end, stream)) || !BM_CUDA_OK(cudaEventSynchronize(end)) ||
        !BM_CUDA_OK(cudaEventElapsedTime(&ms, begin, end))) {
      device_failed = true;
      return std::nullopt;
    }
    return ms / kTuningIterations;
  };
  std::vector<std::optional<float>> times;
  for (size_t a = 0; a < plan.algos.size() && !device_failed; ++a) {
    times.push_back(time_calls([&] {
      const cublasStatus_t status = cublasLtMatmul(handle_, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, out, plan.c,
                                                   out, plan.c, &plan.algos[a], workspace_, workspace_bytes_, stream);
      if (status == CUBLAS_STATUS_SUCCESS) return true;
      if (!is_unsupported_shape(status)) device_failed = !BM_CUBLAS_OK(status);
      return false;
    }));
  }
  if (extra != nullptr && !device_failed) {
    times.push_back(time_calls([&] {
      if ((*extra)()) return true;
      device_failed = true;  // a launch failure is recorded by the launcher
      return false;
    }));
  }
  cudaEventDestroy(end);
  cudaEventDestroy(begin);
  tuning_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (device_failed) return false;
  ++tuned_shapes_;
  const std::vector<int> ranked = ranked_candidates(times);
  const int lt_count = static_cast<int>(plan.algos.size());
  if (log_choices_) {
    const auto [m, n, k, bf16, align_w, align_x, align_out] = key;
    std::string line;
    for (int i = 0; i < static_cast<int>(times.size()); ++i) {
      char item[64];
      const std::string name = i < lt_count ? "cublaslt#" + std::to_string(plan.ranks[i]) : std::string("gemv");
      if (times[i].has_value()) {
        std::snprintf(item, sizeof item, " %s %.1f us", name.c_str(), 1000.0 * *times[i]);
      } else {
        std::snprintf(item, sizeof item, " %s refused", name.c_str());
      }
      line += item;
    }
    const int best = ranked.empty() ? -1 : ranked.front();
    const std::string kept = best < 0          ? std::string("fallback")
                             : best < lt_count ? "cublaslt#" + std::to_string(plan.ranks[best])
                                               : std::string("gemv");
    std::fprintf(stderr, "bmserver: %s GEMM m=%lld n=%lld k=%lld:%s -> %s\n", bf16 ? "bf16" : "f32",
                 static_cast<long long>(m), static_cast<long long>(n), static_cast<long long>(k), line.c_str(),
                 kept.c_str());
  }
  std::vector<cublasLtMatmulAlgo_t> algos;
  std::vector<int> ranks;
  for (int i : ranked) {
    if (i >= lt_count) continue;
    algos.push_back(plan.algos[i]);
    ranks.push_back(plan.ranks[i]);
  }
  if (ranked.empty() && lt_count > 0) warn_fallback(key, "cuBLASLt refused every algorithm it offered");
  plan.algos = std::move(algos);
  plan.ranks = std::move(ranks);
  plan.next = 0;
  return !ranked.empty() && ranked.front() >= lt_count;
}

void LtGemm::log_tuning_once() {
  if (logged_ || tuned_shapes_ == 0) return;
  logged_ = true;
  std::fprintf(
      stderr, "bmserver: timed the GEMM candidates of %d shapes in %.0f ms (%d of them run on the GEMV kernel)%s\n",
      tuned_shapes_, tuning_ms_, gemv_shapes_,
      tuning_ms_ >= kTuningBudgetMs ? "; the time budget ran out, later shapes keep the heuristic's order" : "");
}

}  // namespace bm::engine::cuda
