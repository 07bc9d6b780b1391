#pragma once
// Dense GEMM through cuBLASLt for CudaBackend::linear: out[n, m] (F32, row-major) = x[n, k] · w[m, k]ᵀ, where
// w is stored as PyTorch's nn.Linear stores it ([m, k] row-major, i.e. column-major [k, m]), so in cuBLAS terms
// this is the column-major product D[m, n] = op(A)ᵀ[m, k] · B[k, n] with A = w (transposed), B = x (not): a TN
// GEMM. Inputs are both BF16 or both F32; accumulation and output are F32 (CUBLAS_COMPUTE_32F).
//
// The algorithm is chosen once per (m, n, k, dtype, pointer alignments) with cublasLtMatmulAlgoGetHeuristic and
// cached with its descriptors, so a steady-state step does no descriptor or heuristic work.
//
// A shape cuBLASLt cannot run is not a device fault: the heuristic is asked for several candidates and the first
// it marks runnable within the workspace is used; when cublasLtMatmul refuses one at run time (NOT_SUPPORTED,
// ARCH_MISMATCH) the next is tried; with none left (or none offered) the shape runs on the plain tiled kernel of
// gemm_fallback.cu, slower but correct, and stderr says so once per shape. Only other failures are recorded.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

namespace bm::engine::cuda {

// How many heuristic results are asked for per shape.
constexpr int kGemmHeuristicCandidates = 8;

// The heuristic results cuBLASLt marks runnable within `workspace_bytes`, in its order of preference.
inline std::vector<int> usable_algorithms(const cublasLtMatmulHeuristicResult_t* results, int returned,
                                          size_t workspace_bytes) {
  std::vector<int> usable;
  for (int i = 0; i < returned; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS && results[i].workspaceSize <= workspace_bytes) usable.push_back(i);
  }
  return usable;
}

// Whether a cuBLASLt status means "not this algorithm / shape here" (try the next, then the plain kernel) rather
// than a failure of the device or the library (recorded, sticky).
inline bool is_unsupported_shape(cublasStatus_t status) {
  return status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_ARCH_MISMATCH;
}

class LtGemm {
 public:
  // The handle and workspace stay owned by the caller and must outlive this object.
  LtGemm(cublasLtHandle_t handle, void* workspace, size_t workspace_bytes)
      : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes) {}
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // out = x · wᵀ; w [m, k], x [n, k], out [n, m], all row-major and densely packed. A cuBLASLt failure is
  // recorded in the thread's device-error sink (cuda_check.h) and the GEMM is skipped.
  void run(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out, cudaStream_t stream);

  size_t num_cached_plans() const { return plans_.size(); }

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr;
    cublasLtMatrixLayout_t b = nullptr;
    cublasLtMatrixLayout_t c = nullptr;
    std::vector<cublasLtMatmulAlgo_t> algos;  // runnable candidates, best first; empty: the plain kernel
    size_t next = 0;                          // the candidate in use (earlier ones were refused at run time)
  };
  // m, n, k, bf16, alignment of w, x, out (bytes, power of two up to 256).
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, uint32_t, uint32_t, uint32_t>;

  // The cached plan, or null after recording a cuBLASLt failure (cuda_check.h) in the current sink.
  Plan* plan_for(const Key& key);

  // Says on stderr that a shape runs on the plain kernel, and why.
  static void warn_fallback(const Key& key, const char* why);

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
};

}  // namespace bm::engine::cuda
