#pragma once
// Python str semantics the chat templates rely on: code-point indexing, str.isspace() whitespace, and the
// str methods (split, strip, startswith, ...) a template may call on a string value.
#include <concepts>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/template/value.h"

namespace bm::engine {

// Decodes the code point at s[pos]; invalid bytes decode as themselves (one byte) so nothing is ever lost.
char32_t utf8_decode_one(std::string_view s, size_t pos, size_t* length);
std::vector<char32_t> utf8_decode(std::string_view s);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(const std::vector<char32_t>& cps);
size_t utf8_length(std::string_view s);
bool is_python_space(char32_t cp);

// True for every method name Python's str has, so that an unimplemented one is an error, not an undefined.
bool is_str_method_name(std::string_view name);
// Calls str.<name>(*args) on `self`; an unimplemented Python method is an error naming it.
absl::StatusOr<Value> call_string_method(const std::string& self, std::string_view name, const CallArgs& args);

// absl::StrCat cannot take std::string_view with this system's abseil (built with its own string_view), and
// the template engine passes string_views everywhere; this concatenates strings, views and integers.
inline void append_piece(std::string& out, std::string_view s) {
  out.append(s);
}
inline void append_piece(std::string& out, const char* s) {
  out.append(s);
}
inline void append_piece(std::string& out, const std::string& s) {
  out.append(s);
}
#ifndef ABSL_USES_STD_STRING_VIEW
inline void append_piece(std::string& out, absl::string_view s) {
  out.append(s.data(), s.size());
}
#endif
template <std::integral T>
void append_piece(std::string& out, T v) {
  out.append(std::to_string(v));
}
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::string out;
  (append_piece(out, args), ...);
  return out;
}

}  // namespace bm::engine
