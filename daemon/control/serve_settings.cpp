#include "daemon/control/serve_settings.h"

#include "absl/strings/str_cat.h"

namespace bm::daemon::control {

absl::StatusOr<serving::ServeSettings> serve_settings_from_proto(const bmserver::v1::StoreSelector& store,
                                                                 const bmserver::v1::ServeOptions& o) {
  if (!o.backend().empty() && o.backend() != "auto" && o.backend() != "cpu" && o.backend() != "cuda")
    return absl::InvalidArgumentError(absl::StrCat("backend must be auto, cuda or cpu, not '", o.backend(), "'"));
  if (o.gpu_memory_utilization() < 0 || o.gpu_memory_utilization() > 1)
    return absl::InvalidArgumentError("gpu_memory_utilization must be in (0, 1]");
  if (o.max_model_len() < 0 || o.max_num_seqs() < 0 || o.max_num_batched_tokens() < 0)
    return absl::InvalidArgumentError("max_model_len, max_num_seqs and max_num_batched_tokens must not be negative");
  for (int32_t g : o.gpus())
    if (g < 0) return absl::InvalidArgumentError(absl::StrCat("GPU index ", g, " is negative"));
  serving::ServeSettings s;  // its initialisers are the defaults a 0 / empty field leaves in place
  s.hub = store.hub();
  s.local_dir = store.local_dir();
  if (!o.backend().empty()) s.backend = o.backend();
  s.gpus.assign(o.gpus().begin(), o.gpus().end());
  s.max_model_len = o.max_model_len();
  if (o.gpu_memory_utilization() > 0) s.gpu_memory_utilization = o.gpu_memory_utilization();
  if (o.max_num_seqs() > 0) s.max_num_seqs = o.max_num_seqs();
  s.max_num_batched_tokens = o.max_num_batched_tokens();
  s.seed = o.seed();
  s.api_key = o.api_key();
  s.kv_cache_bytes = o.kv_cache_bytes();
  s.enforce_eager = o.enforce_eager();
  s.enable_prefix_caching = !o.disable_prefix_caching();
  s.extra_params = o.extra_params();
  return s;
}

}  // namespace bm::daemon::control
