#include "daemon/control/serve_settings.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/kv_cache_dtype.h"
#include "daemon/control/store_selector.h"
#include "daemon/serving/media_options.h"
#include "engine/backend/cpu/thread_pool.h"

namespace bm::daemon::control {
namespace {

// CUDA's reading of the variable: a comma list; the first entry that is not a valid index ends it.
absl::StatusOr<std::vector<int32_t>> parse_device_list(const std::string& value, const char* what) {
  std::vector<int32_t> out;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::StartsWithIgnoreCase(part, "GPU-") || absl::StartsWithIgnoreCase(part, "MIG-"))
      return absl::InvalidArgumentError(absl::StrCat(what, "=", value,
                                                     " names GPUs by UUID; give indices, or --gpus with the indices "
                                                     "`bmserver env` lists"));
    int32_t index = 0;
    if (!absl::SimpleAtoi(part, &index) || index < 0) break;
    out.push_back(index);
  }
  return out;
}

}  // namespace

std::string serve_command_line(const std::string& name, const serving::ServeSettings& s) {
  auto quote = [](const std::string& v) {
    if (!v.empty() && v.find_first_of(" \t'\"\\$`;&|<>()*?[]#~") == std::string::npos) return v;
    std::string out = "'";
    for (char c : v) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  };
  std::string line;
  for (const auto& [key, value] : s.env) absl::StrAppend(&line, key, "=", quote(value), " ");
  absl::StrAppend(&line, "bmserver chat serve ", quote(name));
  if (!s.hub.empty()) absl::StrAppend(&line, " --hub ", s.hub);
  if (!s.local_dir.empty()) absl::StrAppend(&line, " --local-dir ", quote(s.local_dir));
  absl::StrAppend(&line, " --backend ", s.backend);
  if (!s.gpus.empty()) absl::StrAppend(&line, " --gpus ", absl::StrJoin(s.gpus, ","));
  if (s.max_model_len > 0) absl::StrAppend(&line, " --max-model-len ", s.max_model_len);
  absl::StrAppend(&line, " --gpu-memory-utilization ", s.gpu_memory_utilization, " --max-num-seqs ", s.max_num_seqs,
                  " --seed ", s.seed);
  if (s.kv_cache_bytes > 0) absl::StrAppend(&line, " --kv-cache-bytes ", s.kv_cache_bytes);
  if (s.threads > 0) absl::StrAppend(&line, " --threads ", s.threads);
  if (s.kv_cache_dtype != "auto") absl::StrAppend(&line, " --kv-cache-dtype ", s.kv_cache_dtype);
  if (s.tensor_parallel_size > 1) absl::StrAppend(&line, " --tensor-parallel-size ", s.tensor_parallel_size);
  if (s.enforce_eager) absl::StrAppend(&line, " --enforce-eager");
  // The media settings, table-driven: flag name → the setting as stored (already in its one spelling).
  const std::pair<const char*, const std::string serving::ServeSettings::*> kMediaFlags[] = {
      {"--limit-mm-per-prompt", &serving::ServeSettings::limit_mm_per_prompt},
      {"--mm-processor-kwargs", &serving::ServeSettings::mm_processor_kwargs},
      {"--allowed-local-media-path", &serving::ServeSettings::allowed_local_media_path},
      {"--allowed-media-domains", &serving::ServeSettings::allowed_media_domains}};
  for (const auto& [flag, member] : kMediaFlags)
    if (!(s.*member).empty()) absl::StrAppend(&line, " ", flag, " ", quote(s.*member));
  std::vector<std::string> extra;
  if (s.max_num_batched_tokens > 0)
    extra.push_back(absl::StrCat("--max-num-batched-tokens ", s.max_num_batched_tokens));
  if (!s.enable_prefix_caching) extra.push_back("--no-enable-prefix-caching");
  if (!extra.empty()) absl::StrAppend(&line, " --extra-params ", quote(absl::StrJoin(extra, " ")));
  if (!s.api_key.empty()) absl::StrAppend(&line, " --api-key '<hidden>'");  // a secret: never echoed
  if (s.listen_port > 0) absl::StrAppend(&line, " --host ", s.listen_host, " --port ", s.listen_port);
  return line;
}

absl::Status apply_command_cuda_visible_devices(const std::string& value, const char* daemon_value,
                                                serving::ServeSettings& settings) {
  absl::StatusOr<std::vector<int32_t>> wanted = parse_device_list(value, "CUDA_VISIBLE_DEVICES");
  if (!wanted.ok()) return wanted.status();
  std::vector<int32_t> visible;  // the daemon's own list; empty: it sees every GPU in the physical numbering
  const bool daemon_restricted = daemon_value != nullptr && *daemon_value != '\0';
  if (daemon_restricted) {
    absl::StatusOr<std::vector<int32_t>> parsed = parse_device_list(daemon_value, "the daemon's CUDA_VISIBLE_DEVICES");
    if (!parsed.ok()) return parsed.status();
    visible = *std::move(parsed);
  }
  if (wanted->empty()) {
    if (settings.backend == "cuda")
      return absl::InvalidArgumentError(
          absl::StrCat("CUDA_VISIBLE_DEVICES=", value, " on the command hides every GPU, but --backend is cuda"));
    settings.backend = "cpu";
    settings.gpus.clear();
    return absl::OkStatus();
  }
  std::vector<int32_t> gpus;
  for (int32_t physical : *wanted) {
    if (!daemon_restricted) {
      gpus.push_back(physical);
      continue;
    }
    auto it = std::find(visible.begin(), visible.end(), physical);
    if (it == visible.end())
      return absl::FailedPreconditionError(absl::StrCat("GPU ", physical,
                                                        " (CUDA_VISIBLE_DEVICES on the command) is not visible to the "
                                                        "daemon, whose CUDA_VISIBLE_DEVICES is ",
                                                        daemon_value));
    gpus.push_back(static_cast<int32_t>(it - visible.begin()));
  }
  settings.gpus = std::move(gpus);
  return absl::OkStatus();
}

absl::StatusOr<serving::ServeSettings> serve_settings_from_proto(const bmserver::v1::StoreSelector& store,
                                                                 const bmserver::v1::ServeOptions& o) {
  if (!o.backend().empty() && o.backend() != "auto" && o.backend() != "cpu" && o.backend() != "cuda")
    return absl::InvalidArgumentError(absl::StrCat("backend must be auto, cuda or cpu, not '", o.backend(), "'"));
  if (o.gpu_memory_utilization() < 0 || o.gpu_memory_utilization() > 1)
    return absl::InvalidArgumentError("gpu_memory_utilization must be in (0, 1]");
  if (o.listen_port() < 0 || o.listen_port() > 65535)
    return absl::InvalidArgumentError(absl::StrCat("--port ", o.listen_port(), " is not a TCP port (1-65535)"));
  if (!o.listen_host().empty() && o.listen_port() == 0)
    return absl::InvalidArgumentError("--host needs --port: the model's own listener is host and port");
  if (o.max_model_len() < 0 || o.max_num_seqs() < 0 || o.max_num_batched_tokens() < 0)
    return absl::InvalidArgumentError("max_model_len, max_num_seqs and max_num_batched_tokens must not be negative");
  const int32_t cpus = engine::cpu::available_cpus();
  if (o.threads() < 0 || o.threads() > cpus)
    return absl::InvalidArgumentError(absl::StrCat("--threads ", o.threads(), " is not possible: the daemon may use ",
                                                   cpus, " CPUs (its affinity mask); give 1 to ", cpus));
  if (o.tensor_parallel_size() < 0 || o.tensor_parallel_size() > 64)
    return absl::InvalidArgumentError(
        absl::StrCat("--tensor-parallel-size ", o.tensor_parallel_size(), " is not a rank count from 1 to 64"));
  absl::StatusOr<std::string> kv_cache_dtype = common::canonical_kv_cache_dtype(o.kv_cache_dtype());
  if (!kv_cache_dtype.ok()) return kv_cache_dtype.status();
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
  s.threads = o.threads();
  s.kv_cache_dtype = *kv_cache_dtype;
  if (o.tensor_parallel_size() > 0) s.tensor_parallel_size = o.tensor_parallel_size();
  s.enable_prefix_caching = !o.disable_prefix_caching();
  s.limit_mm_per_prompt = o.limit_mm_per_prompt();
  s.mm_processor_kwargs = o.mm_processor_kwargs();
  s.allowed_local_media_path = o.allowed_local_media_path();
  s.allowed_media_domains = o.allowed_media_domains();
  if (absl::Status st = serving::normalise_media_settings(s); !st.ok()) return st;
  s.extra_params = o.extra_params();
  s.listen_port = o.listen_port();
  if (s.listen_port > 0) s.listen_host = o.listen_host().empty() ? "127.0.0.1" : o.listen_host();
  absl::StatusOr<common::CommandEnv> env = command_env(store);
  if (!env.ok()) return env.status();
  for (const auto& [name, value] : *env)
    if (common::is_store_location_variable(name)) s.env[name] = value;
  // --gpus is explicit and in the daemon's numbering: it wins over the command's CUDA_VISIBLE_DEVICES.
  if (auto it = env->find("CUDA_VISIBLE_DEVICES"); it != env->end() && o.gpus().empty())
    if (absl::Status st = apply_command_cuda_visible_devices(it->second, std::getenv("CUDA_VISIBLE_DEVICES"), s);
        !st.ok())
      return st;
  return s;
}

}  // namespace bm::daemon::control
