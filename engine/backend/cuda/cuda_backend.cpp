#include "engine/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend/candidate_shapes.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/cuda/plugin_abi.h"
#include "engine/backend/tensor_bytes.h"

namespace bm::engine::cuda {
namespace {

constexpr int64_t kGemmWorkspaceBytes = int64_t{32} << 20;
// linear() converts at most this many activation elements to BF16 per GEMM (64 MiB of scratch); longer inputs
// (long prefills into wide layers) run as several GEMMs over row chunks.
constexpr int64_t kBf16ScratchElements = int64_t{32} << 20;
constexpr int64_t kInitialAttentionWorkspaceBytes = int64_t{16} << 20;
constexpr int64_t kInitialPrefillTileBytes = int64_t{1} << 20;
// quantized_linear() permutes at most this many act-order activation elements per kernel pair (32 MiB); longer
// inputs run as several row chunks.
constexpr int64_t kQuantScratchElements = int64_t{8} << 20;
static_assert(kMaxTopCandidates == Backend::kMaxCandidates);

class CudaBuffer final : public Buffer {
 public:
  CudaBuffer(void* data, int64_t size, int device, std::shared_ptr<DeviceErrors> errors)
      : data_(data), size_(size), device_(device), errors_(std::move(errors)) {}
  ~CudaBuffer() override {
    if (data_ == nullptr) return;
    const ScopedDeviceErrors sink(errors_.get());
    cudaSetDevice(device_);
    const cudaError_t error = cudaFree(data_);
    // At process exit the runtime may already be unloading; nothing is left to free then. After a fault cudaFree
    // returns the sticky error, which is recorded already.
    if (error != cudaErrorCudartUnloading) BM_CUDA_OK(error);
  }
  int64_t size_bytes() const override { return size_; }
  char* data() const { return static_cast<char*>(data_); }

 private:
  void* data_;
  int64_t size_;
  int device_;
  std::shared_ptr<DeviceErrors> errors_;
};

char* bytes_of(const Tensor& tensor) {
  return reinterpret_cast<char*>(tensor_bytes<CudaBuffer>(tensor));
}
float* f32(const Tensor& tensor) {
  return tensor_data<float, CudaBuffer>(tensor, DType::kF32);
}
const int32_t* i32(const Tensor& tensor) {
  return tensor_data<const int32_t, CudaBuffer>(tensor, DType::kI32);
}
int32_t* i32_out(const Tensor& tensor) {
  return tensor_data<int32_t, CudaBuffer>(tensor, DType::kI32);
}
const uint32_t* u32(const Tensor& tensor) {
  return tensor_data<const uint32_t, CudaBuffer>(tensor, DType::kU32);
}

WeightPtr weight_ptr(const Tensor& tensor) {
  BM_CHECK(tensor.dtype == DType::kBF16 || tensor.dtype == DType::kF32);
  return WeightPtr{bytes_of(tensor), tensor.dtype == DType::kBF16};
}

KvCachePtr kv_ptr(const KvCacheLayer& cache) {
  BM_CHECK(cache.k.dtype == cache.v.dtype && cache.k.rows == cache.v.rows && cache.k.cols == cache.v.cols);
  BM_CHECK(cache.k.dtype == DType::kBF16 || cache.k.dtype == DType::kF32);
  BM_CHECK(cache.k.rows % kKvBlockSize == 0);
  return KvCachePtr{bytes_of(cache.k), bytes_of(cache.v), cache.k.dtype == DType::kBF16, cache.k.rows, cache.k.cols};
}

bool same_shape(const Tensor& a, const Tensor& b) {
  return a.rows == b.rows && a.cols == b.cols;
}

std::string describe(cudaError_t error) {
  return absl::StrCat(cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
}

}  // namespace

int CudaBackend::create(int device, std::unique_ptr<CudaBackend>* out, std::string* error) {
  std::unique_ptr<CudaBackend> backend(new CudaBackend(device));
  auto fail = [&](int status, const std::string& what, cudaError_t cause) {
    *error = absl::StrCat(what, " on CUDA device ", device, ": ", describe(cause));
    return status;
  };
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) return fail(kBmCudaError, "cudaSetDevice failed", e);
  if (cudaError_t e = cudaDeviceGetAttribute(&backend->num_sms_, cudaDevAttrMultiProcessorCount, device);
      e != cudaSuccess) {
    return fail(kBmCudaError, "cannot read the SM count", e);
  }
  if (cudaError_t e = cudaStreamCreateWithFlags(&backend->stream_, cudaStreamNonBlocking); e != cudaSuccess) {
    return fail(kBmCudaError, "cannot create a CUDA stream", e);
  }
  if (cublasStatus_t s = cublasLtCreate(&backend->lt_); s != CUBLAS_STATUS_SUCCESS) {
    *error = absl::StrCat("cublasLtCreate failed on CUDA device ", device, ": ", cublasLtGetStatusName(s), " (",
                          cublasLtGetStatusString(s), ")");
    return kBmCudaError;
  }
  const std::pair<DeviceScratch*, int64_t> reservations[] = {
      {&backend->gemm_workspace_, kGemmWorkspaceBytes},
      {&backend->x_bf16_, kBf16ScratchElements * 2},
      {&backend->attention_partial_, kInitialAttentionWorkspaceBytes},
      {&backend->prefill_tiles_, kInitialPrefillTileBytes},
  };
  for (const auto& [scratch, bytes] : reservations) {
    if (cudaError_t e = scratch->reserve(bytes); e != cudaSuccess) {
      const int status = e == cudaErrorMemoryAllocation ? kBmCudaOutOfMemory : kBmCudaError;
      return fail(status, absl::StrCat("cannot allocate ", bytes, " bytes of backend scratch"), e);
    }
  }
  backend->gemm_ =
      std::make_unique<LtGemm>(backend->lt_, backend->gemm_workspace_.data(), static_cast<size_t>(kGemmWorkspaceBytes));
  *out = std::move(backend);
  return kBmCudaOk;
}

CudaBackend::~CudaBackend() {
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (gemm_ != nullptr) gemm_->log_tuning_once();  // an eager-only run never captured
  gemm_.reset();
  if (lt_ != nullptr) cublasLtDestroy(lt_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

bool CudaBackend::ready() const {
  if (router_.failed()) return false;
  // A peer's fault aborted this rank's NCCL group: its communicators are freed, and any further step here (an
  // eager collective, or a replayed graph holding one) would touch them. Recorded like any fault (the hook's
  // abort is then a no-op), so this rank reports the engine failed too.
  if (nccl_group_ != nullptr && nccl_group_->aborted()) {
    device_failed("the NCCL group of this tensor-parallel model was aborted (" + nccl_group_->abort_reason() + ")",
                  __FILE__, __LINE__);
    return false;
  }
  return BM_CUDA_OK(cudaSetDevice(device_));
}

void* CudaBackend::scratch(DeviceScratch& buffer, int64_t bytes, const char* what) {
  if (bytes <= buffer.size()) return buffer.data();
  if (capturing_) {
    // Growing means a sync and a new address, neither of which a graph can hold; the step recorded must have
    // run once uncaptured at the same shapes (DecoderLM does), which grows every scratch first.
    if (capture_problem_.empty())
      capture_problem_ = absl::StrCat("the ", what, " scratch had to grow to ", bytes, " bytes during the capture");
    return nullptr;
  }
  return buffer.ensure(bytes, stream_);
}

// ---- step graphs

namespace {

class CudaStepGraph final : public StepGraph {
 public:
  CudaStepGraph(cudaGraphExec_t exec, int64_t num_nodes, int device, std::shared_ptr<DeviceErrors> errors)
      : exec_(exec), num_nodes_(num_nodes), device_(device), errors_(std::move(errors)) {}
  ~CudaStepGraph() override {
    const ScopedDeviceErrors sink(errors_.get());
    cudaSetDevice(device_);
    const cudaError_t error = cudaGraphExecDestroy(exec_);
    if (error != cudaErrorCudartUnloading) BM_CUDA_OK(error);
  }
  cudaGraphExec_t exec() const { return exec_; }
  int64_t num_nodes() const override { return num_nodes_; }

 private:
  cudaGraphExec_t exec_;
  int64_t num_nodes_;
  int device_;
  std::shared_ptr<DeviceErrors> errors_;
};

}  // namespace

absl::Status CudaBackend::begin_capture() {
  if (capturing_) return absl::FailedPreconditionError("a step is already being captured");
  const ScopedDeviceErrors sink(errors_.get());
  if (!ready()) return device_status();
  // Thread-local mode: only this thread's unsafe calls (a sync, a pageable copy) invalidate the capture; the
  // daemon's other threads may keep using CUDA meanwhile.
  if (const cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal); e != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("cannot start a CUDA graph capture: ", describe(e)));
  }
  capturing_ = true;
  // The uncaptured step before the first capture (the dry run) has timed the GEMM shapes: say what it chose,
  // and time nothing while recording (timing synchronizes).
  gemm_->log_tuning_once();
  gemm_->set_timing_allowed(false);
  capture_problem_.clear();
  router_.begin_capture();  // failures from here to end_capture belong to the capture, not the device
  // The allocations a graph may point to from now on must outlive it (DeviceScratch::pin).
  for (DeviceScratch* buffer :
       {&x_bf16_, &attention_partial_, &prefill_tiles_, &quant_x_, &quant_partials_, &cand_partials_}) {
    buffer->pin();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StepGraph>> CudaBackend::end_capture() {
  if (!capturing_) return absl::FailedPreconditionError("end_capture without begin_capture");
  capturing_ = false;
  gemm_->set_timing_allowed(true);
  const std::string capture_error = router_.end_capture();
  const ScopedDeviceErrors sink(errors_.get());
  cudaSetDevice(device_);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);  // always, so the stream leaves capture mode
  if (ended != cudaSuccess || graph == nullptr || !capture_error.empty() || !capture_problem_.empty()) {
    if (ended != cudaSuccess) cudaGetLastError();
    if (graph != nullptr) cudaGraphDestroy(graph);
    // A failed capture leaves the context usable unless a real fault surfaced during it: ask the stream, now out
    // of capture mode. Only a failure here is sticky (recorded into errors_).
    if (!BM_CUDA_OK(cudaStreamSynchronize(stream_)) || errors_->failed()) return device_status();
    std::string why = capture_error;
    if (why.empty() && !capture_problem_.empty()) why = "incomplete: " + capture_problem_;
    if (why.empty()) why = ended != cudaSuccess ? describe(ended) : "no graph was returned";
    return absl::InternalError(absl::StrCat("the CUDA graph capture failed (the device is fine): ", why));
  }
  size_t num_nodes = 0;
  if (!BM_CUDA_OK(cudaGraphGetNodes(graph, nullptr, &num_nodes))) {  // a null array: the count alone
    cudaGraphDestroy(graph);
    return device_status();
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (instantiated != cudaSuccess) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("cannot instantiate the captured CUDA graph: ", describe(instantiated)));
  }
  return std::unique_ptr<StepGraph>(
      std::make_unique<CudaStepGraph>(exec, static_cast<int64_t>(num_nodes), device_, errors_));
}

void CudaBackend::replay(const StepGraph& graph) {
  BM_CHECK(!capturing_);
  const auto* step = dynamic_cast<const CudaStepGraph*>(&graph);
  BM_CHECK(step != nullptr);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  BM_CUDA_CHECK(cudaGraphLaunch(step->exec(), stream_));
}

absl::Status CudaBackend::device_status() const {
  if (errors_->failed()) return absl::InternalError(errors_->message());
  // A peer rank's fault aborted the group: this rank's collectives since then were not run, so its results are
  // not the model's either.
  if (nccl_group_ != nullptr && nccl_group_->aborted())
    return absl::InternalError(absl::StrCat("the NCCL group of this tensor-parallel model was aborted: ",
                                            nccl_group_->abort_reason()));
  return absl::OkStatus();
}

// ---- collectives (NCCL)

bool CudaBackend::runs_collectives(const Communicator& comm) const {
  // "nccl" communicators are made only by this plugin (bm_cuda_create_communicators_v1), so the kind identifies
  // the type; the rank must live on this backend's device (ncclAllReduce on another device's stream fails).
  if (comm.kind() != "nccl") return false;
  return static_cast<const NcclCommunicator&>(comm).device() == device_;
}

void CudaBackend::nccl_failed(const std::string& what) {
  const ScopedDeviceErrors sink(errors_.get());
  device_failed(what, __FILE__, __LINE__);  // the on_failure hook aborts the group
  if (nccl_group_ != nullptr) nccl_group_->abort(what);
}

void CudaBackend::all_reduce_sum(const Tensor& x, Communicator& comm) {
  BM_CHECK(runs_collectives(comm));
  BM_CHECK(x.dtype == DType::kF32);
  auto& rank = static_cast<NcclCommunicator&>(comm);
  if (nccl_group_ != rank.group()) {
    // One group per backend (one model); bind it on the first collective, which runs on this rank's thread, the
    // only one using this backend, so the hook is set before any record() it could race with.
    BM_CHECK(nccl_group_ == nullptr);
    nccl_group_ = rank.group();
    std::weak_ptr<NcclGroup> group = nccl_group_;
    const int32_t r = rank.rank();
    errors_->set_on_failure([group, r](const std::string& message) {
      if (std::shared_ptr<NcclGroup> g = group.lock()) g->abort(absl::StrCat("rank ", r, ": ", message));
    });
  }
  float* data = f32(x);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  if (nccl_group_->aborted()) {
    nccl_failed(absl::StrCat("rank ", rank.rank(), " skipped an all-reduce: the NCCL group was aborted (",
                             nccl_group_->abort_reason(), ")"));
    return;
  }
  const NcclApi& api = nccl_group_->api();
  const int result = api.all_reduce(data, data, static_cast<size_t>(x.num_elements()), kNcclFloat32, kNcclSum,
                                    rank.comm(), stream_);
  if (result != kNcclSuccess) {
    nccl_failed(absl::StrCat("ncclAllReduce on rank ", rank.rank(), " (GPU ", device_, ") failed: ",
                             nccl_error_text(result, rank.comm())));
    return;
  }
  // Errors that happen inside NCCL after the enqueue (a peer's transport failing) surface here, not as a return
  // value: ask on every collective, a host-side read.
  int async_error = kNcclSuccess;
  const int asked = api.comm_get_async_error(rank.comm(), &async_error);
  if (asked != kNcclSuccess || async_error != kNcclSuccess) {
    nccl_failed(absl::StrCat("NCCL reported an error on rank ", rank.rank(), " (GPU ", device_,
                             "): ", nccl_error_text(asked != kNcclSuccess ? asked : async_error, rank.comm())));
  }
}

MemoryInfo CudaBackend::memory_info() const {
  const ScopedDeviceErrors sink(router_.current());
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  if (!ready() || !BM_CUDA_OK(cudaMemGetInfo(&free_bytes, &total_bytes))) return MemoryInfo{};
  return MemoryInfo{static_cast<int64_t>(total_bytes), static_cast<int64_t>(free_bytes)};
}

absl::StatusOr<std::unique_ptr<Buffer>> CudaBackend::allocate(int64_t num_bytes) {
  BM_CHECK(num_bytes >= 0);
  BM_CHECK(!capturing_);  // Backend contract: nothing is allocated while a step is recorded
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return device_status();
  void* data = nullptr;
  // Round up to whole 256-byte units (cudaMalloc's alignment) and never ask for zero bytes.
  const size_t rounded = static_cast<size_t>(std::max<int64_t>(256, (num_bytes + 255) / 256 * 256));
  const cudaError_t error = cudaMalloc(&data, rounded);
  if (error == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return absl::ResourceExhaustedError(absl::StrCat("the CUDA backend cannot allocate ", num_bytes,
                                                     " bytes on device ", device_, " (", memory_info().free_bytes,
                                                     " bytes free)"));
  }
  if (!BM_CUDA_OK(error)) return device_status();
  return std::make_unique<CudaBuffer>(data, num_bytes, device_, errors_);
}

bool CudaBackend::pinned_ok(cudaError_t error) {
  if (error == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: page-locked memory ran out, the copy falls back to pageable memory
    return false;
  }
  return BM_CUDA_OK(error);
}

void CudaBackend::settle_uploads() {
  pinned_ok(host_staging_.settle());
}

void CudaBackend::copy_to_device(std::span<const std::byte> src, const Tensor& dst) {
  BM_CHECK(static_cast<int64_t>(src.size()) == dst.num_bytes());
  BM_CHECK(!capturing_);  // a host copy cannot be part of a graph
  if (src.empty()) return;
  char* device_bytes = bytes_of(dst);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  // A step's inputs go through the pinned arena: the copy is then a DMA queued on the stream, and the region is
  // not handed out again before the next synchronisation, by when the copy has run (pinned_staging.h). What does
  // not fit (weights, a step larger than the arena so far) copies from pageable memory, which the runtime stages
  // before returning, so `src` may be reused at once either way.
  if (void* staged = host_staging_.upload_region(static_cast<int64_t>(src.size())); staged != nullptr) {
    std::memcpy(staged, src.data(), src.size());
    BM_CUDA_CHECK(cudaMemcpyAsync(device_bytes, staged, src.size(), cudaMemcpyHostToDevice, stream_));
    return;
  }
  BM_CUDA_CHECK(cudaMemcpyAsync(device_bytes, src.data(), src.size(), cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::copy_to_host(const Tensor& src, std::span<std::byte> dst) {
  BM_CHECK(static_cast<int64_t>(dst.size()) == src.num_bytes());
  BM_CHECK(!capturing_);
  const char* device_bytes = dst.empty() ? nullptr : bytes_of(src);
  const ScopedDeviceErrors sink(router_.current());
  bool copied = ready();
  // Into the pinned read-back buffer (one DMA), then a host memcpy of the few kilobytes a step returns; a read
  // larger than that buffer may grow to goes straight into `dst` (the runtime stages it).
  void* pinned = nullptr;
  if (copied && !dst.empty()) {
    void* buffer = nullptr;
    if (pinned_ok(host_staging_.readback(static_cast<int64_t>(dst.size()), &buffer))) pinned = buffer;
    copied = !router_.failed();
  }
  copied = copied &&
           (dst.empty() || BM_CUDA_OK(cudaMemcpyAsync(pinned != nullptr ? pinned : dst.data(), device_bytes,
                                                      dst.size(), cudaMemcpyDeviceToHost, stream_))) &&
           BM_CUDA_OK(cudaStreamSynchronize(stream_));
  if (copied) {
    if (pinned != nullptr) std::memcpy(dst.data(), pinned, dst.size());
    settle_uploads();  // every upload queued before this read-back has run
  }
  // After a fault the bytes are not the result of the ops: hand back zeros rather than stale or partial data.
  if (!copied && !dst.empty()) std::memset(dst.data(), 0, dst.size());
}

void CudaBackend::synchronize() {
  BM_CHECK(!capturing_);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  if (BM_CUDA_OK(cudaStreamSynchronize(stream_))) settle_uploads();
}

void CudaBackend::embedding(const Tensor& table, const Tensor& ids, const Tensor& out) {
  BM_CHECK(ids.rows == 1 && out.rows == ids.cols && out.cols == table.cols);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_embedding(weight_ptr(table), table.rows, table.cols, i32(ids), ids.cols, f32(out), stream_);
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) {
  BM_CHECK(same_shape(x, out) && weight.num_elements() == x.cols);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_rms_norm(f32(x), x.rows, x.cols, weight_ptr(weight), eps, f32(out), stream_);
}

void CudaBackend::add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                               const Tensor& out) {
  BM_CHECK(same_shape(x, residual) && same_shape(x, out) && weight.num_elements() == x.cols);
  BM_CHECK(f32(out) != f32(x));
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_add_rms_norm(f32(x), f32(residual), x.rows, x.cols, weight_ptr(weight), eps, f32(out), stream_);
}

void CudaBackend::linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& out) {
  BM_CHECK(x.cols == weight.cols && out.rows == x.rows && out.cols == weight.rows);
  BM_CHECK(bias == nullptr || bias->num_elements() == weight.rows);
  BM_CHECK(weight.rows > 0 && weight.cols > 0);
  const int64_t n = x.rows;
  const int64_t k = x.cols;
  const int64_t m = weight.rows;
  const float* x_data = f32(x);
  float* out_data = f32(out);
  const WeightPtr w = weight_ptr(weight);
  const WeightPtr b = bias != nullptr ? weight_ptr(*bias) : WeightPtr{};
  if (n == 0) return;
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  if (w.bf16 && n <= kGemvMaxRows) {
    // Decode sizes: the GEMV kernel or cuBLASLt, whichever timing chose for the shape (gemm.h).
    auto* x_bf16 = static_cast<uint16_t*>(scratch(x_bf16_, n * k * 2, "BF16 activation"));
    if (x_bf16 == nullptr) return;
    const bool bias_added = gemm_->run_small_batch(w.data, x_data, x_bf16, m, n, k, b, out_data, stream_);
    if (bias != nullptr && !bias_added && !router_.failed()) launch_add_bias(out_data, n, m, b, stream_);
    return;
  }
  if (!w.bf16) {
    gemm_->run(w.data, x_data, false, m, n, k, out_data, stream_);
  } else {
    const int64_t rows_per_chunk = std::max<int64_t>(1, kBf16ScratchElements / k);
    for (int64_t first = 0; first < n && !router_.failed(); first += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, n - first);
      auto* x_bf16 = static_cast<uint16_t*>(scratch(x_bf16_, rows * k * 2, "BF16 activation"));
      if (x_bf16 == nullptr) return;
      launch_f32_to_bf16(x_data + first * k, rows * k, x_bf16, stream_);
      if (router_.failed()) return;
      gemm_->run(w.data, x_bf16, true, m, rows, k, out_data + first * m, stream_);
    }
  }
  if (bias != nullptr && !router_.failed()) launch_add_bias(out_data, n, m, b, stream_);
}

absl::StatusOr<int64_t> CudaBackend::quantized_matrix_bytes(const QuantizedShape& shape) const {
  if ((shape.bits != 4 && shape.bits != 8) || shape.rows <= 0 || shape.cols <= 0 || shape.group_size <= 0 ||
      shape.group_size % shape.values_per_word() != 0 || shape.cols % shape.group_size != 0 || shape.inputs() <= 0 ||
      shape.inputs() > shape.cols || (!shape.permuted && shape.inputs() != shape.cols)) {
    return absl::InvalidArgumentError(absl::StrCat("the cuda backend cannot lay out a ", shape.bits, "-bit ",
                                                   shape.rows, "x", shape.cols, " matrix with groups of ",
                                                   shape.group_size));
  }
  return quantized_device_layout(shape).total_bytes;
}

void CudaBackend::copy_quantized_to_device(const QuantizedMatrixSource& src, const QuantizedMatrix& dst) {
  BM_CHECK(src.shape == dst.shape && dst.data.dtype == DType::kU8);
  const QuantizedDeviceLayout layout = quantized_device_layout(dst.shape);
  BM_CHECK(dst.data.num_bytes() == layout.total_bytes);
  // One layer's repacked bytes on the host at a time; copy_to_device stages them before returning.
  std::vector<std::byte> packed(static_cast<size_t>(layout.total_bytes));
  pack_quantized_for_device(src, packed.data());
  copy_to_device(packed, dst.data);
}

void CudaBackend::quantized_linear(const Tensor& x, const QuantizedMatrix& weight, const Tensor* bias,
                                   const Tensor& out) {
  const QuantizedShape& shape = weight.shape;
  BM_CHECK(weight.data.dtype == DType::kU8 && weight.data.num_bytes() == quantized_device_layout(shape).total_bytes);
  BM_CHECK(x.cols == shape.inputs() && out.rows == x.rows && out.cols == shape.rows);
  BM_CHECK(bias == nullptr || bias->num_elements() == shape.rows);
  const int64_t n = x.rows;
  const float* x_data = f32(x);
  float* out_data = f32(out);
  BM_CHECK(x_data != out_data);
  const QuantizedWeightPtr w{reinterpret_cast<const std::byte*>(bytes_of(weight.data)), shape};
  const WeightPtr b = bias != nullptr ? weight_ptr(*bias) : WeightPtr{};
  if (n == 0) return;
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  // Row chunks: the permuted activations of one chunk fit the scratch (all rows at once without act-order).
  const int64_t rows_per_chunk = shape.permuted ? std::max<int64_t>(1, kQuantScratchElements / shape.cols) : n;
  for (int64_t first = 0; first < n && !router_.failed(); first += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, n - first);
    const float* xs = x_data + first * shape.inputs();
    if (shape.permuted) {
      auto* permuted = static_cast<float*>(scratch(quant_x_, rows * shape.cols * 4, "quantized activation"));
      if (permuted == nullptr) return;
      launch_quantized_permute(xs, rows, w, permuted, stream_);
      if (router_.failed()) return;
      xs = permuted;
    }
    float* chunk_out = out_data + first * shape.rows;
    if (rows <= kQuantGemvMaxRows) {
      launch_quantized_gemv(xs, rows, w, b, chunk_out, stream_);
      continue;
    }
    const int64_t floats = quantized_gemm_workspace_floats(rows, shape, num_sms_);
    float* partials = nullptr;
    if (floats > 0) {
      partials = static_cast<float*>(scratch(quant_partials_, floats * 4, "quantized GEMM partial sums"));
      if (partials == nullptr) return;
    }
    launch_quantized_gemm(xs, rows, w, b, num_sms_, partials, floats, chunk_out, stream_);
  }
}

void CudaBackend::rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq, int32_t head_dim) {
  BM_CHECK(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0);
  BM_CHECK(positions.num_elements() == x.rows && inv_freq.num_elements() == head_dim / 2);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_rope(f32(x), x.rows, x.cols / head_dim, head_dim, i32(positions), f32(inv_freq), stream_);
}

void CudaBackend::store_kv(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const KvCacheLayer& cache) {
  const KvCachePtr view = kv_ptr(cache);
  BM_CHECK(same_shape(k, v) && k.cols == view.row_size && slot_mapping.num_elements() == k.rows);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_store_kv(f32(k), f32(v), k.rows, i32(slot_mapping), view, stream_);
}

void CudaBackend::rope_store_kv(const Tensor& qkv, const RotaryAngles& angles, const AttentionShape& shape,
                                const Tensor& slot_mapping, const KvCacheLayer& cache, const Tensor& q_out) {
  check_rope_store_kv_shapes(qkv, angles, shape, slot_mapping, cache, q_out);
  const KvCachePtr view = kv_ptr(cache);
  const int64_t hd = shape.head_dim;
  RotaryPtr rotary;
  if (angles.from_table()) {
    rotary.cos = f32(angles.cos);
    rotary.sin = f32(angles.sin);
  } else {
    rotary.positions = i32(angles.positions);
    rotary.inv_freq = f32(angles.inv_freq);
  }
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_rope_store_kv(f32(qkv), qkv.rows, shape.num_heads, hd, rotary, i32(slot_mapping), view, f32(q_out), stream_);
}

void CudaBackend::paged_attention(const Tensor& q, const KvCacheLayer& cache, const AttentionMetadata& metadata,
                                  const AttentionShape& shape, const Tensor& out) {
  const KvCachePtr view = kv_ptr(cache);
  BM_CHECK(same_shape(q, out) && q.cols == int64_t{shape.num_heads} * shape.head_dim);
  BM_CHECK(view.row_size == int64_t{shape.num_kv_heads} * shape.head_dim);
  BM_CHECK(metadata.query_starts.num_elements() == metadata.num_seqs + 1);
  BM_CHECK(metadata.seq_lens.num_elements() == metadata.num_seqs);
  BM_CHECK(metadata.block_tables.rows == metadata.num_seqs);
  BM_CHECK(q.rows <= int64_t{0x7fffffff});
  if (q.rows == 0) return;
  BM_CHECK(metadata.num_seqs > 0 && metadata.max_query_len > 0 && metadata.max_seq_len > 0);
  const AttentionBatchPtr batch{metadata.num_seqs,          i32(metadata.query_starts), i32(metadata.seq_lens),
                                i32(metadata.block_tables), metadata.block_tables.cols, metadata.max_query_len,
                                metadata.max_seq_len};
  const AttentionDims dims{static_cast<int32_t>(q.rows), shape.num_heads, shape.num_kv_heads, shape.head_dim,
                           shape.scale};
  const float* q_data = f32(q);
  float* out_data = f32(out);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  const bool prefill =
      prefill_kernel_supports(view.bf16, shape.head_dim) && metadata.max_query_len >= kPrefillMinQueryLen;
  if (prefill) {
    const int64_t ints = attention_prefill_workspace_ints(dims.num_tokens, metadata.num_seqs);
    auto* tiles = static_cast<int32_t*>(scratch(prefill_tiles_, ints * 4, "prefill tile"));
    if (tiles == nullptr) return;
    launch_attention_prefill(q_data, view, batch, dims, PrefillWorkspace{tiles, ints}, out_data, stream_);
    if (router_.failed()) return;
    // A single sequence whose query is long (its length is all of q's rows) has no short rows left for the
    // split-sequence kernel. (max_query_len is only a bound, so it cannot decide this on its own: a single short
    // query under a loose bound still goes to the split-sequence kernel, and the prefill grid then has no tiles.)
    if (metadata.num_seqs == 1 && dims.num_tokens >= kPrefillMinQueryLen) return;
  }
  const int64_t floats = attention_decode_workspace_floats(dims, metadata.max_seq_len, num_sms_);
  auto* partial =
      static_cast<float*>(scratch(attention_partial_, std::max<int64_t>(floats, 1) * 4, "attention partials"));
  if (partial == nullptr) return;
  launch_attention_decode(q_data, view, batch, dims, prefill, num_sms_, AttentionWorkspace{partial, floats}, out_data,
                          stream_);
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  BM_CHECK(same_shape(gate, up) && same_shape(gate, out));
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_silu_mul(f32(gate), f32(up), gate.num_elements(), f32(out), stream_);
}

void CudaBackend::silu_mul_fused(const Tensor& gate_up, const Tensor& out) {
  BM_CHECK(gate_up.rows == out.rows && gate_up.cols == 2 * out.cols && bytes_of(gate_up) != bytes_of(out));
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_silu_mul_fused(f32(gate_up), out.rows, out.cols, f32(out), stream_);
}

void CudaBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  BM_CHECK(same_shape(a, b) && same_shape(a, out));
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_add(f32(a), f32(b), a.num_elements(), f32(out), stream_);
}

void CudaBackend::gather_rows(const Tensor& x, const Tensor& row_ids, const Tensor& out) {
  BM_CHECK(row_ids.rows == 1 && out.rows == row_ids.cols && out.cols == x.cols);
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_gather_rows(f32(x), x.rows, x.cols, i32(row_ids), row_ids.cols, f32(out), stream_);
}

void CudaBackend::rope_table(const Tensor& x, const Tensor& cos, const Tensor& sin, int32_t head_dim) {
  BM_CHECK(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0);
  BM_CHECK(cos.rows == x.rows && cos.cols == head_dim / 2 && same_shape(cos, sin));
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_rope_table(f32(x), x.rows, x.cols / head_dim, head_dim, f32(cos), f32(sin), stream_);
}

void CudaBackend::segment_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_starts,
                                    const AttentionShape& shape, const Tensor& out) {
  BM_CHECK(shape.num_heads > 0 && shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0);
  BM_CHECK(shape.head_dim > 0 && shape.head_dim <= kSegmentMaxHeadDim);  // 128: encoder_attention.cu says why
  BM_CHECK(same_shape(q, out) && q.cols == int64_t{shape.num_heads} * shape.head_dim);
  BM_CHECK(same_shape(k, v) && k.rows == q.rows && k.cols == int64_t{shape.num_kv_heads} * shape.head_dim);
  BM_CHECK(segment_starts.rows == 1 && segment_starts.cols >= 1);
  BM_CHECK(f32(out) != f32(q) && f32(out) != f32(k) && f32(out) != f32(v));
  // The offsets stay on the device (copying them back would synchronise the stream); the caller (the vision
  // encoder) builds them non-decreasing from 0 to n, and the kernels clamp them to [0, n] whatever they hold.
  const int32_t num_segments = static_cast<int32_t>(segment_starts.cols - 1);
  const AttentionDims dims{static_cast<int32_t>(q.rows), shape.num_heads, shape.num_kv_heads, shape.head_dim,
                           shape.scale};
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  if (q.rows == 0 || num_segments == 0) return;
  const int64_t ints = segment_attention_workspace_ints(q.rows, num_segments);
  auto* tiles = static_cast<int32_t*>(scratch(segment_tiles_, ints * 4, "segment attention tile"));
  if (tiles == nullptr) return;
  launch_segment_attention(f32(q), f32(k), f32(v), q.rows, i32(segment_starts), num_segments, dims,
                           SegmentWorkspace{tiles, ints}, f32(out), stream_);
}

void CudaBackend::gelu(const Tensor& x, const Tensor& out) {
  BM_CHECK(same_shape(x, out));
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  launch_gelu(f32(x), x.num_elements(), f32(out), stream_);
}

void CudaBackend::top_candidates(const Tensor& logits, const Tensor& listed_starts, const Tensor& listed_ids, int32_t k,
                                 const Tensor& listed_logits, const Tensor& cand_ids, const Tensor& cand_logits,
                                 const Tensor& log_sum_exp, const Tensor& inverse_temperatures,
                                 const Tensor& tempered_lse, const Tensor& mask_rows, const Tensor& masks) {
  const CandidateShapes shapes =
      check_candidate_shapes(logits, listed_starts, listed_ids, k, listed_logits, cand_ids, cand_logits, log_sum_exp,
                             inverse_temperatures, tempered_lse, mask_rows, masks);
  const int64_t rows = shapes.rows, vocab = shapes.vocab, num_listed = shapes.num_listed;
  const bool wants_lse = shapes.wants_lse, wants_mass = shapes.wants_mass;
  if (rows == 0) return;
  const int32_t* ids = num_listed > 0 ? i32(listed_ids) : nullptr;
  float* listed_values = num_listed > 0 ? f32(listed_logits) : nullptr;
  float* logits_data = f32(logits);
  const int32_t* starts = i32(listed_starts);
  int32_t* cand_ids_data = i32_out(cand_ids);
  float* cand_logits_data = f32(cand_logits);
  float* lse_data = wants_lse ? f32(log_sum_exp) : nullptr;
  const float* inverse_t = wants_mass ? f32(inverse_temperatures) : nullptr;
  float* mass_data = wants_mass ? f32(tempered_lse) : nullptr;
  // The mask rows' values stay on the device (the caller uploaded and validated them); the kernel leaves a row
  // whose index is out of range unconstrained rather than reading past the masks.
  const int32_t* mask_rows_data = shapes.num_masks > 0 ? i32(mask_rows) : nullptr;
  const uint32_t* masks_data = shapes.num_masks > 0 ? u32(masks) : nullptr;
  const ScopedDeviceErrors sink(router_.current());
  if (!ready()) return;
  // Few rows are split across blocks, so that batch 1 does not scan its row on one SM.
  const int32_t slices = top_candidates_slices(rows, vocab, num_sms_);
  const int64_t workspace_bytes = top_candidates_workspace_bytes(rows, vocab, slices);
  void* workspace = nullptr;
  if (workspace_bytes > 0) {
    workspace = scratch(cand_partials_, workspace_bytes, "candidate partials");
    if (workspace == nullptr) return;  // recorded: a capture problem or a failed allocation
  }
  launch_top_candidates(logits_data, rows, vocab, starts, ids, num_listed, k, listed_values, cand_ids_data,
                        cand_logits_data, lse_data, inverse_t, mass_data, mask_rows_data, masks_data, shapes.num_masks,
                        slices, workspace, workspace_bytes, stream_);
}

}  // namespace bm::engine::cuda
