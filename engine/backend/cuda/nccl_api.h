#pragma once
// The slice of NCCL's C API the plugin uses, declared here and resolved with dlsym from libnccl.so.2 at run time.
//
// Why not #include <nccl.h> and link -lnccl: a NEEDED libnccl would make the engine's dlopen of the whole plugin
// fail on machines without NCCL (most single-GPU machines), taking the single-GPU backend down with it; and
// nccl.h is not part of every CUDA toolkit (Debian's libnccl-dev is a separate package), so the plugin must build
// without it. The declarations below copy NCCL's documented, stable C ABI (nccl.h since 2.x: ncclResult_t values,
// ncclUniqueId of NCCL_UNIQUE_ID_BYTES = 128, ncclComm_t an opaque pointer, ncclFloat32 = 7, ncclSum = 0), and
// the function types are those of nccl.h's prototypes. Only functions present since NCCL 2.4 are required;
// ncclCommFinalize (2.14) and ncclGetLastError (2.13) are optional.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace bm::engine::cuda {

// NCCL's ncclResult_t (a C enum: an int in the ABI).
enum NcclResult : int {
  kNcclSuccess = 0,
  kNcclUnhandledCudaError = 1,
  kNcclSystemError = 2,
  kNcclInternalError = 3,
  kNcclInvalidArgument = 4,
  kNcclInvalidUsage = 5,
  kNcclRemoteError = 6,
  kNcclInProgress = 7,
};
constexpr int kNcclFloat32 = 7;  // ncclDataType_t ncclFloat32
constexpr int kNcclSum = 0;      // ncclRedOp_t ncclSum

struct NcclComm;  // struct ncclComm, opaque
using NcclCommHandle = NcclComm*;

struct NcclApi {
  int (*get_version)(int* version) = nullptr;
  const char* (*get_error_string)(int result) = nullptr;
  const char* (*get_last_error)(NcclCommHandle comm) = nullptr;  // optional (NCCL >= 2.13)
  int (*comm_init_all)(NcclCommHandle* comms, int ndev, const int* devlist) = nullptr;
  int (*comm_finalize)(NcclCommHandle comm) = nullptr;  // optional (NCCL >= 2.14)
  int (*comm_destroy)(NcclCommHandle comm) = nullptr;
  int (*comm_abort)(NcclCommHandle comm) = nullptr;
  int (*comm_get_async_error)(NcclCommHandle comm, int* async_error) = nullptr;
  int (*group_start)() = nullptr;
  int (*group_end)() = nullptr;
  int (*all_reduce)(const void* sendbuff, void* recvbuff, size_t count, int datatype, int op, NcclCommHandle comm,
                    cudaStream_t stream) = nullptr;
};

// libnccl.so.2 (else libnccl.so) opened once per process and never closed (as the plugin itself: communicators
// keep using its code). Null when it cannot be loaded or lacks a required symbol; then *why (when given) says
// which, as a sentence fragment.
const NcclApi* nccl_api(std::string* why = nullptr);

// "ncclUnhandledCudaError (unhandled cuda error ...)", with NCCL's last error for `comm` when it has one.
std::string nccl_error_text(int result, NcclCommHandle comm = nullptr);

}  // namespace bm::engine::cuda
