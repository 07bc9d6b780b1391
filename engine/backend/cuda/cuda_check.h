#pragma once
// Every CUDA runtime and cuBLASLt call inside the plugin after the backend was created goes through these
// macros. A failure there is a device fault (an illegal address surfacing at the next sync or copy, a failed
// launch, a cuBLASLt error), not bad input (shapes are BM_CHECKed before any launch, and a BM_CHECK failure is
// a caller bug that still aborts). It must not take the process down: the daemon stays up and marks the engine
// failed. So a failure is *recorded*, never fatal:
//
//   - DeviceErrors holds one backend's first failure (sticky: a faulted CUDA context cannot be used again).
//     CudaBackend owns it (shared with its buffers, whose destructors may run after a fault) and returns it from
//     device_status() as an InternalError naming the call, file, line and the CUDA error.
//   - The macros do not get a backend passed in: they write into the calling thread's *current sink*, which
//     CudaBackend installs for the duration of each of its calls (ScopedDeviceErrors, RAII, nests). That keeps
//     the launchers in the .cu files free of backend plumbing. A failure with no sink installed (only possible
//     in code that runs outside a backend call) is printed to stderr and otherwise ignored; it never aborts.
//   - BM_CUDA_CHECK / BM_CUBLAS_CHECK / BM_CUDA_CHECK_LAUNCH record the failure and `return;` from the enclosing
//     (void) function, so a launcher never issues the rest of its kernels after a failed step. Where a value must
//     be returned, test BM_CUDA_OK(call) / BM_CUBLAS_OK(call) (true on success, records and gives false on
//     failure) and return what fits.
//   - CudaBackend skips every op once DeviceErrors::failed() (copy_to_host then fills the destination with
//     zeros), so nothing more is issued on a dead context.
//
// The C ABI entry points (plugin_entry.cpp) and CudaBackend::create report failures as status values instead
// and never use these.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace bm::engine::cuda {

// The first device failure of one backend; thread-safe.
class DeviceErrors {
 public:
  // `print`: write the first failure to stderr (a capture's sink does not: its failure is reported by end_capture).
  explicit DeviceErrors(bool print = true) : print_(print) {}
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // Keeps `message` unless a failure was recorded before (the first one is the cause; later ones are its echo).
  void record(const std::string& message);
  // Empty while nothing failed.
  std::string message() const;
  // Called once, with the message, by the record() that records the first failure (outside the lock). A
  // tensor-parallel rank uses it to abort its NCCL group, so its peers do not wait for it for ever. Set it
  // before the backend is used from another thread.
  void set_on_failure(std::function<void(const std::string&)> on_failure) { on_failure_ = std::move(on_failure); }

 private:
  bool print_;
  std::function<void(const std::string&)> on_failure_;
  std::atomic<bool> failed_{false};
  mutable std::mutex mutex_;
  std::string message_;
};

// Where a backend's failures go: its sticky DeviceErrors, except while a stream capture is in progress. A failure
// during a capture (a launch the capture does not support, an invalidated capture, cuBLASLt refusing work inside a
// graph) is a property of that capture, not a dead context: it goes to a sink of its own, the rest of the capture
// is skipped, and end_capture() hands it back so the model turns graphs off and runs eager. Whether the context
// survived is then asked of the stream outside the capture (CudaBackend::end_capture); only a failure there is
// sticky. Not thread-safe: used by the backend's calls, which run on one thread at a time.
class DeviceErrorRouter {
 public:
  explicit DeviceErrorRouter(DeviceErrors* device) : device_(device) {}
  void begin_capture();
  // The capture's first failure without the restart advice, or empty; the sink is the device's again.
  std::string end_capture();
  bool capturing() const { return capture_ != nullptr; }
  // The sink to install for a call now (ScopedDeviceErrors).
  DeviceErrors* current() const { return capture_ != nullptr ? capture_.get() : device_; }
  // Whether work must be skipped: the device faulted, or the capture in progress already failed.
  bool failed() const { return device_->failed() || (capture_ != nullptr && capture_->failed()); }

 private:
  DeviceErrors* device_;
  std::unique_ptr<DeviceErrors> capture_;
};

// Installs `errors` as the calling thread's current sink until destroyed (restores the previous one).
class ScopedDeviceErrors {
 public:
  explicit ScopedDeviceErrors(DeviceErrors* errors);
  ~ScopedDeviceErrors();
  ScopedDeviceErrors(const ScopedDeviceErrors&) = delete;
  ScopedDeviceErrors& operator=(const ScopedDeviceErrors&) = delete;

 private:
  DeviceErrors* previous_;
};

// Records a failure into the current sink (or stderr without one); always returns false.
bool cuda_failed(cudaError_t error, const char* call, const char* file, int line);
bool cublas_failed(cublasStatus_t status, const char* call, const char* file, int line);
// Records a failure that is not a CUDA status (e.g. cuBLASLt has no algorithm for a shape); returns false.
bool device_failed(const std::string& what, const char* file, int line);

inline bool cuda_ok(cudaError_t error, const char* call, const char* file, int line) {
  return error == cudaSuccess || cuda_failed(error, call, file, line);
}
inline bool cublas_ok(cublasStatus_t status, const char* call, const char* file, int line) {
  return status == CUBLAS_STATUS_SUCCESS || cublas_failed(status, call, file, line);
}

}  // namespace bm::engine::cuda

#define BM_CUDA_OK(call) ::bm::engine::cuda::cuda_ok((call), #call, __FILE__, __LINE__)
#define BM_CUBLAS_OK(call) ::bm::engine::cuda::cublas_ok((call), #call, __FILE__, __LINE__)

// In a void function: on failure, record it and return.
#define BM_CUDA_CHECK(call)        \
  do {                             \
    if (!BM_CUDA_OK(call)) return; \
  } while (0)

#define BM_CUBLAS_CHECK(call)        \
  do {                               \
    if (!BM_CUBLAS_OK(call)) return; \
  } while (0)

// After a kernel launch: launch-configuration errors show up here, faults inside the kernel at the next
// synchronising call (or at a later launch, which then names that later call: the message says where the fault
// surfaced, not necessarily which kernel caused it).
#define BM_CUDA_CHECK_LAUNCH() BM_CUDA_CHECK(cudaGetLastError())
