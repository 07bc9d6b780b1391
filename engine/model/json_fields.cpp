#include "engine/model/json_fields.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace bm::engine {

const nlohmann::json* JsonFieldReader::find(std::string_view key) const {
  if (!object_.is_object()) return nullptr;
  const auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void JsonFieldReader::fail(std::string_view key, std::string_view expected) {
  if (status_.ok())
    status_ = absl::InvalidArgumentError(
        absl::StrCat(source_, ": field '", std::string(key), "' is not ", std::string(expected)));
}

std::optional<int64_t> JsonFieldReader::get_int(std::string_view key) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (value->is_number_integer()) return value->get<int64_t>();
  // Some writers store whole numbers as floats ("max_position_embeddings": 32768.0).
  if (value->is_number_float()) {
    const double number = value->get<double>();
    if (std::nearbyint(number) == number && std::abs(number) < 9e15) return static_cast<int64_t>(number);
  }
  fail(key, "an integer");
  return std::nullopt;
}

std::optional<double> JsonFieldReader::get_number(std::string_view key) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (value->is_number()) return value->get<double>();
  fail(key, "a number");
  return std::nullopt;
}

std::optional<bool> JsonFieldReader::get_bool(std::string_view key) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (value->is_boolean()) return value->get<bool>();
  fail(key, "true or false");
  return std::nullopt;
}

std::optional<std::string> JsonFieldReader::get_string(std::string_view key) {
  const nlohmann::json* value = find(key);
  if (value == nullptr) return std::nullopt;
  if (value->is_string()) return value->get<std::string>();
  fail(key, "a string");
  return std::nullopt;
}

std::vector<int32_t> JsonFieldReader::get_token_ids(std::string_view key) {
  std::vector<int32_t> ids;
  const nlohmann::json* value = find(key);
  if (value == nullptr) return ids;
  auto add = [&](const nlohmann::json& id) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return false;
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    return true;
  };
  const bool ok = value->is_array() ? std::all_of(value->begin(), value->end(), add) : add(*value);
  if (!ok) {
    fail(key, "a token id or a list of token ids");
    ids.clear();
  }
  return ids;
}

}  // namespace bm::engine
