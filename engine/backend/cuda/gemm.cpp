#include "engine/backend/cuda/gemm.h"

#include <cstdio>

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
    for (int i : usable_algorithms(results, returned, workspace_bytes_)) plan.algos.push_back(results[i].algo);
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

void LtGemm::run(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out,
                 cudaStream_t stream) {
  BM_CHECK(w != nullptr && x != nullptr && out != nullptr);
  BM_CHECK(m > 0 && n >= 0 && k > 0);
  if (n == 0) return;
  const Key key{m, n, k, bf16, alignment_of(w), alignment_of(x), alignment_of(out)};
  Plan* plan = plan_for(key);
  if (plan == nullptr) return;
  const float alpha = 1.0f;
  const float beta = 0.0f;
  while (plan->next < plan->algos.size()) {
    const cublasStatus_t status =
        cublasLtMatmul(handle_, plan->desc, &alpha, w, plan->a, x, plan->b, &beta, out, plan->c, out, plan->c,
                       &plan->algos[plan->next], workspace_, workspace_bytes_, stream);
    if (status == CUBLAS_STATUS_SUCCESS) return;
    if (!is_unsupported_shape(status)) {
      BM_CUBLAS_OK(status);  // a real failure: recorded
      return;
    }
    // Refused before any work was queued: the next candidate, and the plain kernel after the last.
    if (++plan->next == plan->algos.size()) warn_fallback(key, "cuBLASLt refused every algorithm it offered");
  }
  launch_gemm_fallback(w, x, bf16, m, n, k, out, stream);
}

}  // namespace bm::engine::cuda
