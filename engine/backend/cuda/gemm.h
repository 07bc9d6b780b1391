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
//
// Small batches (docs/cuda-backend.md, "Small-batch GEMMs"): the heuristic's first choice is often not the
// fastest at decode sizes, where the product only streams w. So the first call of a shape with timed_rows(n)
// outside a graph capture (the uncaptured step DecoderLM runs before capturing each decode graph shape)
// times every runnable candidate on the real operands and keeps them fastest first; for BF16 w and n <=
// kGemvMaxRows the GEMV kernel of gemv.cu is one more candidate (run_small_batch). The choice is recorded per
// shape, so a capture and every replay use it; timing never happens during a capture (the heuristic's order is
// kept then), and stops for good once kTuningBudgetMs of wall time is spent.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {

// How many heuristic results are asked for per shape.
constexpr int kGemmHeuristicCandidates = 8;

// The row counts timed at their first uncaptured call: the decode graphs' batch shapes (decode_graphs.h: 1, 2,
// 4, 8, then multiples of 8) up to kTunedMaxRows. Other counts are prefill lengths, each seen once or twice,
// where timing (it synchronizes) would cost more than it saves.
constexpr int64_t kTunedMaxRows = 256;
inline bool timed_rows(int64_t n) {
  return n >= 1 && (n <= kGemvMaxRows || (n <= kTunedMaxRows && n % 8 == 0));
}
// Warm-up calls and timed calls per candidate, and the wall time all timing may take over the object's life.
constexpr int kTuningWarmups = 1;
constexpr int kTuningIterations = 5;
constexpr double kTuningBudgetMs = 2000.0;

// The candidates that ran, fastest first (ms per call; nullopt: it failed or was refused), equal times in
// candidate order (the heuristic's preference, then the GEMV kernel), so equal measurements choose the same.
// Empty when none ran: the caller falls back to the plain kernel.
inline std::vector<int> ranked_candidates(const std::vector<std::optional<float>>& ms) {
  std::vector<int> ran;
  for (int i = 0; i < static_cast<int>(ms.size()); ++i) {
    if (ms[i].has_value() && *ms[i] >= 0.0f) ran.push_back(i);  // NaN and negative times are failures too
  }
  std::stable_sort(ran.begin(), ran.end(), [&](int a, int b) { return *ms[a] < *ms[b]; });
  return ran;
}

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
      : handle_(handle), workspace_(workspace), workspace_bytes_(workspace_bytes), log_choices_(log_choices_wanted()) {}
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // out = x · wᵀ; w [m, k], x [n, k], out [n, m], all row-major and densely packed. A cuBLASLt failure is
  // recorded in the thread's device-error sink (cuda_check.h) and the GEMM is skipped.
  void run(const void* w, const void* x, bool bf16, int64_t m, int64_t n, int64_t k, float* out, cudaStream_t stream);

  // For BF16 w and 1 <= n <= kGemvMaxRows, x in F32 as linear() has it: the shape's recorded choice, the GEMV
  // kernel (adds the bias itself: returns true) or cuBLASLt on x converted into x_bf16 (n·k elements of scratch;
  // returns false, the caller adds the bias). The first uncaptured call of a shape times both (see above).
  bool run_small_batch(const void* w, const float* x, uint16_t* x_bf16, int64_t m, int64_t n, int64_t k, WeightPtr bias,
                       float* out, cudaStream_t stream);

  // False while a graph is being captured: no timing (it synchronizes) and no new choices made by timing.
  void set_timing_allowed(bool allowed) { timing_allowed_ = allowed; }

  // One stderr line on what timing chose (shapes, how many went to the GEMV kernel, ms spent); only the first
  // call prints, and only when something was timed. With BMSERVER_LOG_GEMM_CHOICES=1 in the environment
  // (bm_backend_ops_bench sets it) every timed shape also gets a line: each candidate's time and the one kept.
  void log_tuning_once();

  size_t num_cached_plans() const { return plans_.size(); }

 private:
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr;
    cublasLtMatrixLayout_t b = nullptr;
    cublasLtMatrixLayout_t c = nullptr;
    std::vector<cublasLtMatmulAlgo_t> algos;  // runnable candidates, best first; empty: the plain kernel
    std::vector<int> ranks;                   // each candidate's place in the heuristic's order
    size_t next = 0;                          // the candidate in use (earlier ones were refused at run time)
    bool tuned = false;                       // algos are in measured order
  };
  // m, n, k, bf16, alignment of w, x, out (bytes, power of two up to 256).
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, uint32_t, uint32_t, uint32_t>;

  // The cached plan, or null after recording a cuBLASLt failure (cuda_check.h) in the current sink.
  Plan* plan_for(const Key& key);

  // Runs the plan's candidates from plan.next on, then the plain kernel (run() after planning).
  void run_plan(Plan& plan, const Key& key, const void* w, const void* x, int64_t m, int64_t n, int64_t k, float* out,
                cudaStream_t stream);

  // Times the plan's candidates (and `extra`, the GEMV kernel, when given) on the operands, keeps the ones that
  // ran fastest first, and returns whether `extra` was the fastest. out is overwritten (the caller's real call
  // follows). A failure other than a refusal is recorded and leaves the plan as it was.
  bool tune(Plan& plan, const Key& key, const void* w, const void* x, float* out, cudaStream_t stream,
            const std::function<bool()>* extra);

  // Says on stderr that a shape runs on the plain kernel, and why.
  static void warn_fallback(const Key& key, const char* why);

  static bool log_choices_wanted();

  cublasLtHandle_t handle_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, Plan> plans_;
  std::map<Key, bool> gemv_choice_;  // BF16 small batches (x: the F32 input): whether the GEMV kernel runs them
  bool timing_allowed_ = true;
  double tuning_ms_ = 0.0;  // wall time spent timing
  int tuned_shapes_ = 0;
  int gemv_shapes_ = 0;
  bool logged_ = false;
  bool log_choices_ = false;  // BMSERVER_LOG_GEMM_CHOICES, read at construction
};

}  // namespace bm::engine::cuda
