#pragma once
// The C ABI between the engine and the CUDA backend plugin (libbm_backend_cuda.so). The engine dlopens the
// plugin, so nothing outside engine/backend/cuda links a CUDA library or needs a driver to start.
//
// Version 2 adds bm_cuda_create_backend_v1, which hands a C++ object (bm::engine::Backend, backend.h) across
// the boundary. That is sound only because the plugin and the engine come from the same build (same compiler,
// same standard library, same backend.h): the version number is bumped whenever backend.h changes, and the
// engine refuses a plugin whose probe reports another version. Version 3: Backend::top_candidates. Version 4:
// add_rms_norm, step graphs (begin_capture / end_capture / replay), the tempered mass of top_candidates.
// Version 5: quantized_matrix_bytes, copy_quantized_to_device, quantized_linear (GPTQ / AWQ weights).
// Version 7: top_candidates takes allowed-token masks (structured output on the device). Version 8: the encoder
// ops (runs_encoder_ops, rope_table, segment_attention, gelu; the vision tower), which the plugin runs
// (rope.cu, encoder_attention.cu, elementwise.cu). Version 9: the collectives (runs_collectives, all_reduce_sum;
// tensor parallelism), not yet run by the plugin. Version 10: bm_cuda_create_communicators_v1 (NCCL communicators,
// one per GPU of a tensor-parallel group) and the plugin running the collectives on them (CudaBackend::
// runs_collectives / all_reduce_sum). It hands C++ objects across (bm::engine::Communicator, communicator.h) as
// bm_cuda_create_backend_v1 does, sound for the same reason: same build, and communicator.h changes bump the version.
// Version 11: QuantizedShape::padded_from (a tensor-parallel rank's act-order layer with padding inputs).
// Version 12: rope_store_kv and silu_mul_fused (the fused q/k/v and gate/up weights' ops; rope_store_kv.cu).
#include <stddef.h>

#define BM_CUDA_PLUGIN_ABI_VERSION 12

extern "C" {

struct BmCudaProbe {
  int abi_version;
  int device_count;         // -1 when the runtime could not be initialised (see error)
  int runtime_version;      // cudaRuntimeGetVersion, e.g. 13000
  int driver_version;       // cudaDriverGetVersion (the CUDA API the driver supports), 0 without a driver
  int nccl_version;         // ncclGetVersion, e.g. 22703; 0 when libnccl could not be loaded (opened at run time)
  size_t cublaslt_version;  // cublasLtGetVersion, e.g. 130100
  char error[256];          // why devices could not be used; empty when fine
};

// Fills `out`; returns 0. Never aborts, whatever the driver state.
typedef int (*BmCudaProbeFn)(BmCudaProbe* out);
int bm_cuda_plugin_probe(BmCudaProbe* out);

// Status codes of the entry points below (0 is success).
enum BmCudaStatus {
  kBmCudaOk = 0,
  kBmCudaAbiMismatch = 1,     // the caller was built against another BM_CUDA_PLUGIN_ABI_VERSION
  kBmCudaNoDevice = 2,        // no GPU, or the index names none
  kBmCudaDriverTooOld = 3,    // the driver supports an older CUDA than the plugin's runtime
  kBmCudaUnsupportedGpu = 4,  // compute capability below 8.0 (no bf16 tensor cores)
  kBmCudaOutOfMemory = 5,
  kBmCudaError = 6,  // any other CUDA / cuBLASLt / NCCL failure; the sentence says which
  kBmCudaNcclUnavailable = 7,  // libnccl.so.2 could not be loaded (or is too old): no tensor parallelism on GPUs
  kBmCudaMixedGpus = 8,        // a tensor-parallel group over GPUs of different models or compute capabilities
  kBmCudaInvalidArgument = 9,  // e.g. the same device twice in one group
};

struct BmCudaBackendOptions {
  int abi_version;   // the caller's BM_CUDA_PLUGIN_ABI_VERSION
  int device_index;  // CUDA runtime ordinal (after CUDA_VISIBLE_DEVICES)
};

// Creates a CUDA backend on one device. On success returns kBmCudaOk and stores a `bm::engine::Backend*` in
// *backend; the caller owns it and destroys it through Backend's virtual destructor (the plugin must stay
// loaded while it lives). On failure returns another BmCudaStatus and writes a sentence into error.
typedef int (*BmCudaCreateBackendFn)(const BmCudaBackendOptions* options, void** backend, char* error,
                                     size_t error_size);
int bm_cuda_create_backend_v1(const BmCudaBackendOptions* options, void** backend, char* error, size_t error_size);

struct BmCudaCommunicatorOptions {
  int abi_version;            // the caller's BM_CUDA_PLUGIN_ABI_VERSION
  int count;                  // ranks in the group, >= 1
  const int* device_indices;  // count CUDA ordinals, distinct; rank r runs on device_indices[r]
};

// Creates one NCCL communicator per device of a tensor-parallel group of one process (ncclCommInitAll; every GPU
// must be the same model). On success returns kBmCudaOk and stores `count` `bm::engine::Communicator*` into
// communicators[0..count), rank r's at r; the caller owns them (virtual destructor; the group's NCCL state goes
// when the last of them does, the plugin staying loaded). Each is for the CUDA backend created on the same device
// (runs_collectives). On failure returns another BmCudaStatus, stores nothing, and writes a sentence into error.
typedef int (*BmCudaCreateCommunicatorsFn)(const BmCudaCommunicatorOptions* options, void** communicators,
                                           char* error, size_t error_size);
int bm_cuda_create_communicators_v1(const BmCudaCommunicatorOptions* options, void** communicators, char* error,
                                    size_t error_size);

// Device-to-device copy bandwidth of one device in GB/s (bytes read + bytes written per second, median of
// `iterations` timed copies of `bytes`), for benchmarks' bandwidth ceilings. Returns a BmCudaStatus.
typedef int (*BmCudaCopyBandwidthFn)(int device_index, size_t bytes, int iterations, double* gb_per_s, char* error,
                                     size_t error_size);
int bm_cuda_measure_copy_bandwidth(int device_index, size_t bytes, int iterations, double* gb_per_s, char* error,
                                   size_t error_size);
}
