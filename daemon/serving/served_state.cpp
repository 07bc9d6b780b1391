#include "daemon/serving/served_state.h"

#include <cstdint>
#include <limits>
#include <map>
#include <variant>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace bm::daemon::serving {
namespace {

using json = nlohmann::json;

constexpr int kVersion = 1;

// One table drives both directions, so a setting cannot be written without being read back.
using Member = std::variant<std::string ServeSettings::*, std::vector<int32_t> ServeSettings::*,
                            int32_t ServeSettings::*, uint64_t ServeSettings::*, double ServeSettings::*,
                            bool ServeSettings::*, std::map<std::string, std::string> ServeSettings::*>;
struct Field {
  const char* key;
  Member member;
};
const Field kFields[] = {
    {"hub", &ServeSettings::hub},
    {"local_dir", &ServeSettings::local_dir},
    {"backend", &ServeSettings::backend},
    {"gpus", &ServeSettings::gpus},
    {"max_model_len", &ServeSettings::max_model_len},
    {"gpu_memory_utilization", &ServeSettings::gpu_memory_utilization},
    {"max_num_seqs", &ServeSettings::max_num_seqs},
    {"max_num_batched_tokens", &ServeSettings::max_num_batched_tokens},
    {"seed", &ServeSettings::seed},
    {"api_key", &ServeSettings::api_key},
    {"kv_cache_bytes", &ServeSettings::kv_cache_bytes},
    {"enforce_eager", &ServeSettings::enforce_eager},
    {"threads", &ServeSettings::threads},
    {"kv_cache_dtype", &ServeSettings::kv_cache_dtype},
    {"tensor_parallel_size", &ServeSettings::tensor_parallel_size},
    {"enable_prefix_caching", &ServeSettings::enable_prefix_caching},
    {"limit_mm_per_prompt", &ServeSettings::limit_mm_per_prompt},
    {"mm_processor_kwargs", &ServeSettings::mm_processor_kwargs},
    {"allowed_local_media_path", &ServeSettings::allowed_local_media_path},
    {"allowed_media_domains", &ServeSettings::allowed_media_domains},
    {"extra_params", &ServeSettings::extra_params},
    {"listen_host", &ServeSettings::listen_host},
    {"listen_port", &ServeSettings::listen_port},
    {"env", &ServeSettings::env},
};

bool fits_int32(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
  if (!v.is_number_integer()) return false;
  int64_t x = v.get<int64_t>();
  return x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max();
}

// Reads one field into `settings`; the error names the field and the type it needs.
absl::Status read_field(const json& value, const Field& field, const std::string& where, ServeSettings& settings) {
  auto wrong = [&](const char* expected) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".", field.key, " must be ", expected));
  };
  struct Reader {
    const json& value;
    ServeSettings& settings;
    decltype(wrong)& fail;
    absl::Status operator()(std::string ServeSettings::*m) const {
      if (!value.is_string()) return fail("a string");
      settings.*m = value.get<std::string>();
      return absl::OkStatus();
    }
    absl::Status operator()(std::vector<int32_t> ServeSettings::*m) const {
      if (!value.is_array()) return fail("an array of GPU indices");
      std::vector<int32_t> out;
      for (const json& g : value) {
        if (!fits_int32(g)) return fail("an array of GPU indices");
        out.push_back(static_cast<int32_t>(g.get<int64_t>()));
      }
      settings.*m = std::move(out);
      return absl::OkStatus();
    }
    absl::Status operator()(int32_t ServeSettings::*m) const {
      if (!fits_int32(value)) return fail("a 32-bit integer");
      settings.*m = static_cast<int32_t>(value.get<int64_t>());
      return absl::OkStatus();
    }
    absl::Status operator()(uint64_t ServeSettings::*m) const {
      if (!value.is_number_unsigned()) return fail("a non-negative integer");
      settings.*m = value.get<uint64_t>();
      return absl::OkStatus();
    }
    absl::Status operator()(double ServeSettings::*m) const {
      if (!value.is_number()) return fail("a number");
      settings.*m = value.get<double>();
      return absl::OkStatus();
    }
    absl::Status operator()(bool ServeSettings::*m) const {
      if (!value.is_boolean()) return fail("true or false");
      settings.*m = value.get<bool>();
      return absl::OkStatus();
    }
    absl::Status operator()(std::map<std::string, std::string> ServeSettings::*m) const {
      if (!value.is_object()) return fail("an object of strings");
      std::map<std::string, std::string> out;
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) return fail("an object of strings");
        out[k] = v.get<std::string>();
      }
      settings.*m = std::move(out);
      return absl::OkStatus();
    }
  };
  return std::visit(Reader{value, settings, wrong}, field.member);
}

absl::StatusOr<ServeSettings> read_settings(const json& j, const std::string& where) {
  ServeSettings settings;
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
  // Keys this version does not know are ignored, so a file from a newer daemon with an added setting still loads.
  for (const Field& field : kFields) {
    auto it = j.find(field.key);
    if (it == j.end()) continue;
    if (absl::Status s = read_field(*it, field, where, settings); !s.ok()) return s;
  }
  return settings;
}

}  // namespace

std::string served_state_to_json(const std::vector<ServeCommand>& served) {
  json list = json::array();
  for (const ServeCommand& command : served) {
    json settings = json::object();
    for (const Field& field : kFields)
      std::visit([&](auto member) { settings[field.key] = command.settings.*member; }, field.member);
    list.push_back({{"name", command.name}, {"settings", std::move(settings)}});
  }
  return json{{"version", kVersion}, {"served", std::move(list)}}.dump(2) + "\n";
}

absl::StatusOr<std::vector<ServeCommand>> parse_served_state(std::string_view text) {
  if (text.size() > kMaxServedStateBytes)
    return absl::InvalidArgumentError(
        absl::StrCat("it holds ", text.size(), " bytes, more than the ", kMaxServedStateBytes, " a served list needs"));
  json state = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (state.is_discarded()) return absl::InvalidArgumentError("it is not valid JSON (truncated?)");
  if (!state.is_object()) return absl::InvalidArgumentError("it is not a JSON object");
  auto version = state.find("version");
  if (version == state.end() || !version->is_number_integer() || version->get<int64_t>() != kVersion)
    return absl::InvalidArgumentError(absl::StrCat("'version' must be ", kVersion));
  auto served = state.find("served");
  if (served == state.end() || !served->is_array())
    return absl::InvalidArgumentError("'served' must be an array of models");
  std::vector<ServeCommand> commands;
  for (size_t i = 0; i < served->size(); ++i) {
    const json& entry = (*served)[i];
    std::string where = absl::StrCat("served[", i, "]");
    if (!entry.is_object()) return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
    auto name = entry.find("name");
    if (name == entry.end() || !name->is_string() || name->get<std::string>().empty())
      return absl::InvalidArgumentError(absl::StrCat(where, ".name must be a non-empty string"));
    ServeCommand command{name->get<std::string>(), {}};
    if (auto settings = entry.find("settings"); settings != entry.end()) {
      absl::StatusOr<ServeSettings> read = read_settings(*settings, where + ".settings");
      if (!read.ok()) return read.status();
      command.settings = *std::move(read);
    }
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace bm::daemon::serving
