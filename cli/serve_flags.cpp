#include "cli/serve_flags.h"

#include <filesystem>

#include "bmserver/v1/serving.pb.h"
#include "cli/extra_params.h"

namespace bm::cli {

absl::Status fill_serve_options(const ServeFlags& flags, bmserver::v1::ServeOptions& out) {
  bmserver::v1::ServeOptions o;
  o.set_backend(flags.backend);
  for (int32_t g : flags.gpus) o.add_gpus(g);
  o.set_max_model_len(flags.max_model_len);
  o.set_gpu_memory_utilization(flags.gpu_memory_utilization);
  o.set_max_num_seqs(flags.max_num_seqs);
  o.set_seed(flags.seed);
  o.set_api_key(flags.api_key);
  o.set_kv_cache_bytes(flags.kv_cache_bytes);
  o.set_enforce_eager(flags.enforce_eager);
  o.set_threads(flags.threads);
  o.set_kv_cache_dtype(flags.kv_cache_dtype);
  o.set_tensor_parallel_size(flags.tensor_parallel_size);
  o.set_limit_mm_per_prompt(flags.limit_mm_per_prompt);
  o.set_mm_processor_kwargs(flags.mm_processor_kwargs);
  if (!flags.allowed_local_media_path.empty()) {
    std::error_code ec;
    std::filesystem::path absolute = std::filesystem::absolute(flags.allowed_local_media_path, ec);
    o.set_allowed_local_media_path(ec ? flags.allowed_local_media_path : absolute.lexically_normal().string());
  }
  o.set_allowed_media_domains(flags.allowed_media_domains);
  if (absl::Status s = apply_extra_params(flags.extra_params, o); !s.ok()) return s;
  o.set_extra_params(flags.extra_params);
  out = std::move(o);
  return absl::OkStatus();
}

}  // namespace bm::cli
