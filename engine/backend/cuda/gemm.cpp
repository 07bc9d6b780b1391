#include "engine/backend/cuda/gemm.h"

#include <cstdio>
#include <cstdlib>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"

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

const LtGemm::Plan& LtGemm::plan_for(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return found->second;
  const auto [m, n, k, bf16, align_w, align_x, align_out] = key;
  Plan plan;
  BM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T;
  const cublasOperation_t keep = CUBLAS_OP_N;
  BM_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof transpose));
  BM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof keep));
  const cudaDataType_t input = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  // Column-major views: A = w as [k, m] (ld k), B = x as [k, n] (ld k), C = D = out as [m, n] (ld m).
  BM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, input, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k));
  BM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, input, static_cast<uint64_t>(k), static_cast<uint64_t>(n), k));
  BM_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, static_cast<uint64_t>(m), static_cast<uint64_t>(n), m));

  cublasLtMatmulPreference_t preference = nullptr;
  BM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace_bytes = workspace_bytes_;
  BM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                       &workspace_bytes, sizeof workspace_bytes));
  BM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                       &align_w, sizeof align_w));
  BM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                       &align_x, sizeof align_x));
  BM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                       &align_out, sizeof align_out));
  BM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                       &align_out, sizeof align_out));
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  BM_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.a, plan.b, plan.c, plan.c, preference, 1,
                                                 &result, &returned));
  cublasLtMatmulPreferenceDestroy(preference);
  if (returned == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr,
                 "bmserver: cuBLASLt has no algorithm for a %s GEMM m=%lld n=%lld k=%lld (alignments %u/%u/%u)\n",
                 bf16 ? "bf16" : "f32", static_cast<long long>(m), static_cast<long long>(n),
                 static_cast<long long>(k), align_w, align_x, align_out);
    std::abort();
  }
  plan.algo = result.algo;
  return plans_.emplace(key, plan).first->second;
}

void LtGemm::run(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out,
                 cudaStream_t stream) {
  BM_CHECK(w != nullptr && x != nullptr && out != nullptr);
  BM_CHECK(m > 0 && n >= 0 && k > 0);
  if (n == 0) return;
  const Plan& plan = plan_for(Key{m, n, k, bf16, alignment_of(w), alignment_of(x), alignment_of(out)});
  const float alpha = 1.0f;
  const float beta = 0.0f;
  BM_CUBLAS_CHECK(cublasLtMatmul(handle_, plan.desc, &alpha, w, plan.a, x, plan.b, &beta, out, plan.c, out, plan.c,
                                 &plan.algo, workspace_, workspace_bytes_, stream));
}

}  // namespace bm::engine::cuda
