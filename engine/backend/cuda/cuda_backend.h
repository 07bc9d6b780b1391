#pragma once
// CudaBackend: the Backend interface (engine/backend/backend.h) on one NVIDIA GPU. All work goes to one CUDA
// stream in issue order; copy_to_host and synchronize() wait for it. Buffers are cudaMalloc'ed device memory.
// linear() runs cuBLASLt (BF16 weights: the F32 activations are rounded to BF16 into a backend-owned scratch
// first; F32 weights: an F32 GEMM); the other ops are this folder's kernels (kernels.h). Used from one thread
// at a time (the model runner), which may differ from the thread that created it.
//
// Device faults (cuda_check.h): the first failed CUDA / cuBLASLt call or launch after creation is recorded as a
// sticky error, every later op is skipped (copy_to_host fills zeros), and device_status() returns it as an
// InternalError; the process never aborts for it. A failure while a step graph is being captured is the
// capture's (DeviceErrorRouter): end_capture returns it, the device stays usable unless the stream reports a
// fault after the capture. Shape and dtype violations still abort (BM_CHECK).
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_scratch.h"
#include "engine/backend/cuda/pinned_staging.h"
#include "engine/backend/cuda/gemm.h"
#include "engine/backend/cuda/nccl_communicator.h"

namespace bm::engine::cuda {

class CudaBackend final : public Backend {
 public:
  // Creates the stream, the cuBLASLt handle and the scratch buffers on `device`. Never aborts: returns a
  // BmCudaStatus code (plugin_abi.h) and writes a sentence into `error` on failure.
  static int create(int device, std::unique_ptr<CudaBackend>* out, std::string* error);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  MemoryInfo memory_info() const override;

  absl::StatusOr<std::unique_ptr<Buffer>> allocate(int64_t num_bytes) override;
  void copy_to_device(std::span<const std::byte> src, const Tensor& dst) override;
  void copy_to_host(const Tensor& src, std::span<std::byte> dst) override;
  void synchronize() override;
  absl::Status device_status() const override;

  // CUDA graphs: stream capture in thread-local mode, instantiated once, launched by replay().
  bool records_steps() const override { return true; }
  absl::Status begin_capture() override;
  absl::StatusOr<std::unique_ptr<StepGraph>> end_capture() override;
  void replay(const StepGraph& graph) override;

  // GPTQ / AWQ weights in quantized_linear.cu's layout: the GEMV kernel up to kQuantGemvMaxRows activation rows,
  // the tensor-core GEMM above.
  absl::StatusOr<int64_t> quantized_matrix_bytes(const QuantizedShape& shape) const override;
  void copy_quantized_to_device(const QuantizedMatrixSource& src, const QuantizedMatrix& dst) override;
  void quantized_linear(const Tensor& x, const QuantizedMatrix& weight, const Tensor* bias, const Tensor& out) override;

  void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override;
  void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                    const Tensor& out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& out) override;
  void rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq, int32_t head_dim) override;
  void store_kv(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const KvCacheLayer& cache) override;
  void rope_store_kv(const Tensor& qkv, const RotaryAngles& angles, const AttentionShape& shape,
                     const Tensor& slot_mapping, const KvCacheLayer& cache, const Tensor& q_out) override;
  void paged_attention(const Tensor& q, const KvCacheLayer& cache, const AttentionMetadata& metadata,
                       const AttentionShape& shape, const Tensor& out) override;
  void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void silu_mul_fused(const Tensor& gate_up, const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void gather_rows(const Tensor& x, const Tensor& row_ids, const Tensor& out) override;

  // Tensor parallelism over NCCL (nccl_communicator.h): an NcclCommunicator whose rank sits on this device.
  // all_reduce_sum is ncclAllReduce in place (F32 sum) on this backend's stream, so a step graph captures it with
  // the rest of the step (NCCL supports stream capture). A failed NCCL call, an asynchronous NCCL error, or any
  // device fault of this backend after its first collective aborts the whole group (NcclGroup::abort); an
  // aborted group is a device fault on every rank (device_status).
  bool runs_collectives(const Communicator& comm) const override;
  void all_reduce_sum(const Tensor& x, Communicator& comm) override;

  // The vision tower's encoder ops (rope.cu, encoder_attention.cu, elementwise.cu).
  bool runs_encoder_ops() const override { return true; }
  void rope_table(const Tensor& x, const Tensor& cos, const Tensor& sin, int32_t head_dim) override;
  void segment_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_starts,
                         const AttentionShape& shape, const Tensor& out) override;
  void gelu(const Tensor& x, const Tensor& out) override;
  void top_candidates(const Tensor& logits, const Tensor& listed_starts, const Tensor& listed_ids, int32_t k,
                      const Tensor& listed_logits, const Tensor& cand_ids, const Tensor& cand_logits,
                      const Tensor& log_sum_exp, const Tensor& inverse_temperatures, const Tensor& tempered_lse,
                      const Tensor& mask_rows, const Tensor& masks) override;

  int device() const { return device_; }

 private:
  explicit CudaBackend(int device)
      : device_(device), errors_(std::make_shared<DeviceErrors>()), router_(errors_.get()) {}
  // Whether device work may be issued: no fault recorded so far and the device is current on this thread.
  // Call with this backend's ScopedDeviceErrors installed.
  bool ready() const;
  // `buffer` with at least `bytes`, growing it outside a capture; null when it cannot (recorded: a device fault,
  // or a capture problem that end_capture reports).
  void* scratch(DeviceScratch& buffer, int64_t bytes, const char* what);

  // Records an NCCL failure as a sticky device fault (never the capture's: peers cannot skip their half of a
  // collective, so a rank that failed one cannot carry on with or without graphs) and aborts the group.
  void nccl_failed(const std::string& what);
  // The outcome of a pinned allocation: true on success; an out-of-memory is no fault (the copy goes through
  // pageable memory instead, and the error is cleared), any other error is recorded as one.
  bool pinned_ok(cudaError_t error);
  // After the stream was synchronised: lets the upload arena start over (PinnedStaging::settle).
  void settle_uploads();

  int device_;
  std::shared_ptr<NcclGroup> nccl_group_;  // the group of this rank's first collective (one group per backend)
  std::shared_ptr<DeviceErrors> errors_;  // shared with the buffers (their destructors may record a failure)
  DeviceErrorRouter router_;              // errors_, or the capture's own sink while capturing
  int num_sms_ = 1;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  DeviceScratch gemm_workspace_;
  std::unique_ptr<LtGemm> gemm_;
  DeviceScratch x_bf16_;             // linear(): x rounded to BF16, in row chunks that fit it
  DeviceScratch attention_partial_;  // split-sequence attention partial results
  DeviceScratch prefill_tiles_;      // prefill attention tile list
  DeviceScratch segment_tiles_;      // segment_attention tile list (grows with the rows; not captured)
  DeviceScratch quant_x_;            // quantized_linear(): act-order activations in packed order, in row chunks
  DeviceScratch quant_partials_;     // quantized_linear(): the GEMM's partial sums when the inputs are split
  DeviceScratch cand_partials_;      // top_candidates(): the shares of rows split across blocks
  // Pinned host memory the copies go through (pinned_staging.h); declared after stream_ so that it is freed
  // after ~CudaBackend synchronised the stream.
  PinnedStaging host_staging_;
  bool capturing_ = false;
  std::string capture_problem_;  // why the capture in progress cannot give a complete graph
};

}  // namespace bm::engine::cuda
