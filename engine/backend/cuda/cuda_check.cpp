#include "engine/backend/cuda/cuda_check.h"

#include <cstdio>
#include <cstring>

namespace bm::engine::cuda {
namespace {

thread_local DeviceErrors* current_sink = nullptr;
constexpr char kRestartAdvice[] = "; the device needs a restart of this engine";

const char* base_name(const char* file) {
  const char* slash = std::strrchr(file, '/');
  return slash != nullptr ? slash + 1 : file;
}

bool report(const std::string& message) {
  if (current_sink != nullptr) {
    current_sink->record(message);
  } else {
    std::fprintf(stderr, "bmserver: %s (outside a backend call: not recorded)\n", message.c_str());
  }
  return false;
}

}  // namespace

void DeviceErrors::record(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failed_.load(std::memory_order_relaxed)) return;
    message_ = message;
    failed_.store(true, std::memory_order_release);
    if (print_) std::fprintf(stderr, "bmserver: %s\n", message.c_str());
  }
  if (on_failure_) on_failure_(message);  // outside the lock: it may take other locks (NcclGroup::abort)
}

void DeviceErrorRouter::begin_capture() {
  capture_ = std::make_unique<DeviceErrors>(/*print=*/false);
}

std::string DeviceErrorRouter::end_capture() {
  std::string message = capture_ != nullptr ? capture_->message() : std::string();
  capture_.reset();
  // The advice fits a dead context, not a failed capture.
  if (const size_t at = message.rfind(kRestartAdvice); at != std::string::npos) message.erase(at);
  return message;
}

std::string DeviceErrors::message() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return message_;
}

ScopedDeviceErrors::ScopedDeviceErrors(DeviceErrors* errors) : previous_(current_sink) {
  current_sink = errors;
}
ScopedDeviceErrors::~ScopedDeviceErrors() {
  current_sink = previous_;
}

bool cuda_failed(cudaError_t error, const char* call, const char* file, int line) {
  return report(std::string("CUDA error ") + cudaGetErrorName(error) + ": " + cudaGetErrorString(error) + " (" + call +
                " at " + base_name(file) + ":" + std::to_string(line) + ")" + kRestartAdvice);
}

bool cublas_failed(cublasStatus_t status, const char* call, const char* file, int line) {
  return report(std::string("cuBLASLt error ") + cublasLtGetStatusName(status) + ": " +
                cublasLtGetStatusString(status) + " (" + call + " at " + base_name(file) + ":" + std::to_string(line) +
                ")" + kRestartAdvice);
}

bool device_failed(const std::string& what, const char* file, int line) {
  return report(what + " (at " + std::string(base_name(file)) + ":" + std::to_string(line) + ")" + kRestartAdvice);
}

}  // namespace bm::engine::cuda
