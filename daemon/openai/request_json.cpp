#include "daemon/openai/request_json.h"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {
namespace {

using ObjectVector = RequestJson::object_t::Container;

// Objects up to this size find a repeated key by scanning; larger ones build a hash index once.
constexpr size_t kScanLimit = 16;

// A SAX consumer that builds the ordered tree. Each open container is a frame; `slot_` is where the next value
// of the innermost object goes. Pointers into a parent stay valid because only the innermost container grows.
class OrderedTreeBuilder {
 public:
  using number_integer_t = RequestJson::number_integer_t;
  using number_unsigned_t = RequestJson::number_unsigned_t;
  using number_float_t = RequestJson::number_float_t;
  using string_t = RequestJson::string_t;
  using binary_t = RequestJson::binary_t;

  explicit OrderedTreeBuilder(size_t max_depth) : max_depth_(max_depth) {}

  bool null() { return put(RequestJson(nullptr)) != nullptr; }
  bool boolean(bool b) { return put(RequestJson(b)) != nullptr; }
  bool number_integer(number_integer_t i) { return put(RequestJson(i)) != nullptr; }
  bool number_unsigned(number_unsigned_t u) { return put(RequestJson(u)) != nullptr; }
  bool number_float(number_float_t d, const string_t&) { return put(RequestJson(d)) != nullptr; }
  bool string(string_t& s) { return put(RequestJson(std::move(s))) != nullptr; }
  bool binary(binary_t&) { return false; }  // JSON text has no binary values

  bool start_object(size_t) { return open(RequestJson::object()); }
  bool start_array(size_t) { return open(RequestJson::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(string_t& k) {
    Frame& frame = frames_.back();
    ObjectVector& members = frame.value->get_ref<RequestJson::object_t&>();
    size_t at = members.size();
    if (!frame.index.empty()) {
      auto [it, inserted] = frame.index.emplace(k, at);
      at = it->second;
    } else {
      for (size_t i = 0; i < members.size(); ++i) {
        if (members[i].first == k) {
          at = i;
          break;
        }
      }
      if (at == members.size() && members.size() == kScanLimit) {
        for (size_t i = 0; i < members.size(); ++i) frame.index.emplace(members[i].first, i);
        frame.index.emplace(k, at);
      }
    }
    if (at == members.size()) members.emplace_back(std::move(k), RequestJson());
    slot_ = &members[at].second;
    return true;
  }

  bool parse_error(size_t position, const std::string&, const nlohmann::detail::exception&) {
    error_ = absl::InvalidArgumentError(absl::StrCat("not valid JSON (at byte ", position, ")"));
    return false;
  }

  absl::StatusOr<RequestJson> result(bool parsed) {
    if (!error_.ok()) return error_;
    if (!parsed) return absl::InvalidArgumentError("not valid JSON");
    return std::move(root_);
  }

 private:
  struct Frame {
    RequestJson* value;
    std::unordered_map<std::string, size_t> index;  // key -> position, once the object is large
  };

  // Places a value where the grammar says it goes; returns it (nullptr never happens for valid SAX order).
  RequestJson* put(RequestJson v) {
    if (frames_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    RequestJson& parent = *frames_.back().value;
    if (parent.is_array()) {
      parent.get_ref<RequestJson::array_t&>().push_back(std::move(v));
      return &parent.get_ref<RequestJson::array_t&>().back();
    }
    *slot_ = std::move(v);
    return slot_;
  }

  bool open(RequestJson container) {
    if (frames_.size() >= max_depth_) {
      error_ = absl::ResourceExhaustedError(absl::StrCat("nested deeper than ", max_depth_, " levels"));
      return false;
    }
    RequestJson* placed = put(std::move(container));
    frames_.push_back(Frame{placed, {}});
    return true;
  }

  bool close() {
    frames_.pop_back();
    return true;
  }

  size_t max_depth_;
  RequestJson root_;
  RequestJson* slot_ = nullptr;
  std::vector<Frame> frames_;
  absl::Status error_;
};

absl::StatusOr<engine::Value> convert(const RequestJson& j, size_t depth) {
  if (depth > engine::kMaxValueDepth) {
    return absl::InvalidArgumentError(absl::StrCat("JSON is nested deeper than ", engine::kMaxValueDepth, " levels"));
  }
  switch (j.type()) {
    case RequestJson::value_t::null:
      return engine::Value::none();
    case RequestJson::value_t::boolean:
      return engine::Value::boolean(j.get<bool>());
    case RequestJson::value_t::number_integer:
      return engine::Value::integer(j.get<int64_t>());
    case RequestJson::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) {
        return absl::InvalidArgumentError(absl::StrCat("the integer ", u, ", which does not fit in 64 bits"));
      }
      return engine::Value::integer(static_cast<int64_t>(u));
    }
    case RequestJson::value_t::number_float:
      return engine::Value::number(j.get<double>());
    case RequestJson::value_t::string:
      return engine::Value::string(j.get_ref<const std::string&>());
    case RequestJson::value_t::array: {
      std::vector<engine::Value> items;
      items.reserve(j.size());
      for (const RequestJson& e : j) {
        absl::StatusOr<engine::Value> v = convert(e, depth + 1);
        if (!v.ok()) return v.status();
        items.push_back(*std::move(v));
      }
      return engine::Value::array(std::move(items));
    }
    case RequestJson::value_t::object: {
      std::vector<engine::Value::Entry> entries;
      entries.reserve(j.size());
      for (const auto& [k, e] : j.get_ref<const RequestJson::object_t&>()) {
        absl::StatusOr<engine::Value> v = convert(e, depth + 1);
        if (!v.ok()) return v.status();
        entries.emplace_back(k, *std::move(v));
      }
      return engine::Value::object(std::move(entries));
    }
    case RequestJson::value_t::binary:
    case RequestJson::value_t::discarded:
      break;
  }
  return absl::InvalidArgumentError("a JSON value of an unsupported type");
}

}  // namespace

absl::StatusOr<RequestJson> parse_request_json(std::string_view text, size_t max_depth) {
  OrderedTreeBuilder builder(max_depth);
  bool parsed = RequestJson::sax_parse(text.data(), text.data() + text.size(), &builder);
  return builder.result(parsed);
}

absl::StatusOr<engine::Value> to_template_value(const RequestJson& json) {
  return convert(json, 0);
}

}  // namespace bm::daemon::openai
