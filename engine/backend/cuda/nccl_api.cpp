#include "engine/backend/cuda/nccl_api.h"

#include <dlfcn.h>

namespace bm::engine::cuda {
namespace {

struct Loaded {
  NcclApi api;
  bool ok = false;
  std::string why;
};

template <typename Fn>
bool resolve(void* handle, const char* name, Fn* fn, bool required, std::string* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr && required) {
    if (!missing->empty()) *missing += ", ";
    *missing += name;
    return false;
  }
  return true;
}

Loaded load() {
  Loaded loaded;
  void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) handle = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    loaded.why = std::string("libnccl.so.2 could not be loaded (") + (reason != nullptr ? reason : "no reason given") +
                 "); install NCCL 2 (e.g. NVIDIA's libnccl2 package) for tensor parallelism across GPUs";
    return loaded;
  }
  NcclApi& a = loaded.api;
  std::string missing;
  bool ok = true;
  ok &= resolve(handle, "ncclGetVersion", &a.get_version, true, &missing);
  ok &= resolve(handle, "ncclGetErrorString", &a.get_error_string, true, &missing);
  ok &= resolve(handle, "ncclGetLastError", &a.get_last_error, false, &missing);
  ok &= resolve(handle, "ncclCommInitAll", &a.comm_init_all, true, &missing);
  ok &= resolve(handle, "ncclCommFinalize", &a.comm_finalize, false, &missing);
  ok &= resolve(handle, "ncclCommDestroy", &a.comm_destroy, true, &missing);
  ok &= resolve(handle, "ncclCommAbort", &a.comm_abort, true, &missing);
  ok &= resolve(handle, "ncclCommGetAsyncError", &a.comm_get_async_error, true, &missing);
  ok &= resolve(handle, "ncclGroupStart", &a.group_start, true, &missing);
  ok &= resolve(handle, "ncclGroupEnd", &a.group_end, true, &missing);
  ok &= resolve(handle, "ncclAllReduce", &a.all_reduce, true, &missing);
  if (!ok) {
    loaded.why = "the loaded libnccl lacks " + missing + "; install NCCL 2.4 or newer";
    return loaded;
  }
  loaded.ok = true;
  return loaded;
}

}  // namespace

const NcclApi* nccl_api(std::string* why) {
  static const Loaded loaded = load();  // thread-safe once
  if (!loaded.ok) {
    if (why != nullptr) *why = loaded.why;
    return nullptr;
  }
  return &loaded.api;
}

std::string nccl_error_text(int result, NcclCommHandle comm) {
  static constexpr const char* kNames[] = {"ncclSuccess",         "ncclUnhandledCudaError", "ncclSystemError",
                                           "ncclInternalError",   "ncclInvalidArgument",    "ncclInvalidUsage",
                                           "ncclRemoteError",     "ncclInProgress"};
  std::string text = result >= 0 && result < 8 ? kNames[result] : "ncclResult " + std::to_string(result);
  const NcclApi* api = nccl_api();
  if (api != nullptr) {
    text += std::string(" (") + api->get_error_string(result) + ")";
    if (comm != nullptr && api->get_last_error != nullptr) {
      const char* last = api->get_last_error(comm);
      if (last != nullptr && *last != '\0') text += std::string(": ") + last;
    }
  }
  return text;
}

}  // namespace bm::engine::cuda
