#pragma once
// Typed reads of optional fields from a model file's JSON (config.json, generation_config.json). The reader
// keeps the first error (a field of the wrong type) so that parsing code reads as a list of fields and checks
// status() once. Private to engine/model's .cpp files: nlohmann stays out of the engine's interfaces.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace bm::engine {

class JsonFieldReader {
 public:
  JsonFieldReader(const nlohmann::json& object, std::string_view source) : object_(object), source_(source) {}

  // Absent or null → nullopt; present with the wrong type → nullopt and an error in status().
  std::optional<int64_t> get_int(std::string_view key);
  std::optional<double> get_number(std::string_view key);
  std::optional<bool> get_bool(std::string_view key);
  std::optional<std::string> get_string(std::string_view key);
  // A token id or a list of them (eos_token_id is either); empty when absent.
  std::vector<int32_t> get_token_ids(std::string_view key);

  int64_t int_or(std::string_view key, int64_t fallback) { return get_int(key).value_or(fallback); }
  double number_or(std::string_view key, double fallback) { return get_number(key).value_or(fallback); }
  bool bool_or(std::string_view key, bool fallback) { return get_bool(key).value_or(fallback); }

  const absl::Status& status() const { return status_; }

 private:
  const nlohmann::json* find(std::string_view key) const;
  void fail(std::string_view key, std::string_view expected);

  const nlohmann::json& object_;
  std::string source_;
  absl::Status status_;
};

}  // namespace bm::engine
