#include "engine/template/string_methods.h"

#include <clocale>
#include <cwctype>

#include <algorithm>
#include <array>

#include "absl/status/status.h"

namespace bm::engine {
namespace {

constexpr std::array<std::string_view, 47> kStrMethods = {
    "capitalize",   "casefold",   "center",    "count",       "encode",    "endswith",     "expandtabs",   "find",
    "format",       "format_map", "index",     "isalnum",     "isalpha",   "isascii",      "isdecimal",    "isdigit",
    "isidentifier", "islower",    "isnumeric", "isprintable", "isspace",   "istitle",      "isupper",      "join",
    "ljust",        "lower",      "lstrip",    "maketrans",   "partition", "removeprefix", "removesuffix", "replace",
    "rfind",        "rindex",     "rjust",     "rpartition",  "rsplit",    "rstrip",       "split",        "splitlines",
    "startswith",   "strip",      "swapcase",  "title",       "translate", "upper",        "zfill"};

// Reads argument `index` or keyword `name`; nullptr when absent.
const Value* arg(const CallArgs& args, size_t index, std::string_view name) {
  if (index < args.positional.size()) return &args.positional[index];
  for (const auto& [k, v] : args.keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

absl::Status check_arity(const CallArgs& args, std::string_view method, size_t max_args) {
  if (args.positional.size() + args.keyword.size() > max_args) {
    return absl::InvalidArgumentError(str_cat("str.", method, "() takes at most ", max_args, " arguments"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> string_arg(const Value* v, std::string_view method) {
  if (v == nullptr || !v->is_string()) {
    return absl::InvalidArgumentError(str_cat("str.", method, "() needs a string argument"));
  }
  return v->as_string();
}

char32_t map_case(char32_t cp, bool upper) {
  if (cp < 0x80) {
    if (upper && cp >= 'a' && cp <= 'z') return cp - 32;
    if (!upper && cp >= 'A' && cp <= 'Z') return cp + 32;
    return cp;
  }
  static locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
  if (utf8 == static_cast<locale_t>(nullptr)) return cp;
  return static_cast<char32_t>(upper ? towupper_l(static_cast<wint_t>(cp), utf8)
                                     : towlower_l(static_cast<wint_t>(cp), utf8));
}

bool is_cased_letter(char32_t cp) {
  return map_case(cp, true) != cp || map_case(cp, false) != cp;
}

std::string change_case(const std::string& s, bool upper) {
  std::string out;
  for (char32_t cp : utf8_decode(s)) {
    if (upper && cp == 0xDF) {
      out += "SS";  // Python's full case mapping of sharp s
      continue;
    }
    utf8_append(out, map_case(cp, upper));
  }
  return out;
}

std::string title_case(const std::string& s) {
  std::string out;
  bool previous_cased = false;
  for (char32_t cp : utf8_decode(s)) {
    utf8_append(out, map_case(cp, !previous_cased));
    previous_cased = is_cased_letter(cp);
  }
  return out;
}

std::string capitalize(const std::string& s) {
  std::string out;
  bool first = true;
  for (char32_t cp : utf8_decode(s)) {
    utf8_append(out, map_case(cp, first));
    first = false;
  }
  return out;
}

// Python's str.strip family: `chars` None means whitespace.
absl::StatusOr<Value> strip(const std::string& self, const CallArgs& args, std::string_view method, bool left,
                            bool right) {
  if (auto st = check_arity(args, method, 1); !st.ok()) return st;
  const Value* chars = arg(args, 0, "chars");
  std::vector<char32_t> strip_set;
  bool whitespace = chars == nullptr || chars->is_none();
  if (!whitespace) {
    if (!chars->is_string()) return absl::InvalidArgumentError(str_cat("str.", method, "() arg must be str"));
    strip_set = utf8_decode(chars->as_string());
  }
  auto strippable = [&](char32_t cp) {
    return whitespace ? is_python_space(cp) : std::find(strip_set.begin(), strip_set.end(), cp) != strip_set.end();
  };
  std::vector<char32_t> cps = utf8_decode(self);
  size_t begin = 0;
  size_t end = cps.size();
  if (left) {
    while (begin < end && strippable(cps[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strippable(cps[end - 1])) --end;
  }
  return Value::string(
      utf8_encode(std::vector<char32_t>(cps.begin() + static_cast<long>(begin), cps.begin() + static_cast<long>(end))));
}

absl::StatusOr<Value> split(const std::string& self, const CallArgs& args, bool from_right) {
  std::string_view method = from_right ? "rsplit" : "split";
  if (auto st = check_arity(args, method, 2); !st.ok()) return st;
  const Value* sep = arg(args, 0, "sep");
  const Value* max_split_value = arg(args, 1, "maxsplit");
  int64_t max_split = -1;
  if (max_split_value != nullptr) {
    if (!max_split_value->is_int()) return absl::InvalidArgumentError("str.split() maxsplit must be an integer");
    max_split = max_split_value->as_int();
  }
  std::vector<std::string> parts;
  if (sep == nullptr || sep->is_none()) {
    std::vector<char32_t> cps = utf8_decode(self);
    std::vector<std::vector<char32_t>> words;
    if (!from_right) {
      size_t i = 0;
      while (i < cps.size()) {
        while (i < cps.size() && is_python_space(cps[i])) ++i;
        if (i == cps.size()) break;
        if (max_split >= 0 && static_cast<int64_t>(words.size()) == max_split) {
          size_t end = cps.size();
          while (end > i && is_python_space(cps[end - 1])) --end;
          words.emplace_back(cps.begin() + static_cast<long>(i), cps.begin() + static_cast<long>(end));
          break;
        }
        size_t start = i;
        while (i < cps.size() && !is_python_space(cps[i])) ++i;
        words.emplace_back(cps.begin() + static_cast<long>(start), cps.begin() + static_cast<long>(i));
      }
    } else {
      size_t i = cps.size();
      while (i > 0) {
        while (i > 0 && is_python_space(cps[i - 1])) --i;
        if (i == 0) break;
        if (max_split >= 0 && static_cast<int64_t>(words.size()) == max_split) {
          size_t start = 0;
          while (start < i && is_python_space(cps[start])) ++start;
          words.emplace_back(cps.begin() + static_cast<long>(start), cps.begin() + static_cast<long>(i));
          break;
        }
        size_t end = i;
        while (i > 0 && !is_python_space(cps[i - 1])) --i;
        words.emplace_back(cps.begin() + static_cast<long>(i), cps.begin() + static_cast<long>(end));
      }
      std::reverse(words.begin(), words.end());
    }
    for (const auto& w : words) parts.push_back(utf8_encode(w));
  } else {
    auto sep_text = string_arg(sep, method);
    if (!sep_text.ok()) return sep_text.status();
    if (sep_text->empty()) return absl::InvalidArgumentError("str.split(): empty separator");
    const std::string& s = *sep_text;
    if (!from_right) {
      size_t start = 0;
      while (true) {
        size_t hit = self.find(s, start);
        if (hit == std::string::npos || (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split)) {
          parts.push_back(self.substr(start));
          break;
        }
        parts.push_back(self.substr(start, hit - start));
        start = hit + s.size();
      }
    } else {
      size_t end = self.size();
      while (true) {
        size_t hit = end >= s.size() ? self.rfind(s, end - s.size()) : std::string::npos;
        if (hit == std::string::npos || (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split)) {
          parts.push_back(self.substr(0, end));
          break;
        }
        parts.push_back(self.substr(hit + s.size(), end - hit - s.size()));
        end = hit;
      }
      std::reverse(parts.begin(), parts.end());
    }
  }
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::string(std::move(p)));
  return Value::array(std::move(items));
}

absl::StatusOr<Value> affix_test(const std::string& self, const CallArgs& args, bool prefix) {
  std::string_view method = prefix ? "startswith" : "endswith";
  if (auto st = check_arity(args, method, 1); !st.ok()) return st;
  const Value* a = arg(args, 0, "prefix");
  if (a == nullptr) return absl::InvalidArgumentError(str_cat("str.", method, "() takes one argument"));
  std::vector<Value> candidates = a->is_array() && a->is_tuple() ? a->items() : std::vector<Value>{*a};
  for (const auto& c : candidates) {
    if (!c.is_string()) return absl::InvalidArgumentError(str_cat("str.", method, "() needs str or tuple"));
    const std::string& t = c.as_string();
    bool hit = prefix ? self.compare(0, t.size(), t) == 0 && self.size() >= t.size()
                      : self.size() >= t.size() && self.compare(self.size() - t.size(), t.size(), t) == 0;
    if (hit) return Value::boolean(true);
  }
  return Value::boolean(false);
}

absl::StatusOr<Value> replace(const std::string& self, const CallArgs& args) {
  if (auto st = check_arity(args, "replace", 3); !st.ok()) return st;
  auto old_text = string_arg(arg(args, 0, "old"), "replace");
  auto new_text = string_arg(arg(args, 1, "new"), "replace");
  if (!old_text.ok()) return old_text.status();
  if (!new_text.ok()) return new_text.status();
  int64_t count = -1;
  if (const Value* c = arg(args, 2, "count"); c != nullptr) {
    if (!c->is_int()) return absl::InvalidArgumentError("str.replace() count must be an integer");
    count = c->as_int();
  }
  std::string out;
  if (old_text->empty()) {
    // Python inserts `new` between every code point (and at both ends).
    std::vector<char32_t> cps = utf8_decode(self);
    int64_t done = 0;
    for (char32_t cp : cps) {
      if (count < 0 || done < count) {
        out += *new_text;
        ++done;
      }
      utf8_append(out, cp);
    }
    if (count < 0 || done < count) out += *new_text;
    return Value::string(std::move(out));
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = self.find(*old_text, start);
    if (hit == std::string::npos) break;
    out.append(self, start, hit - start);
    out += *new_text;
    start = hit + old_text->size();
    ++done;
  }
  out.append(self, start, std::string::npos);
  return Value::string(std::move(out));
}

// find/rfind/count/index return code-point positions as Python does.
absl::StatusOr<Value> search(const std::string& self, const CallArgs& args, std::string_view method) {
  if (auto st = check_arity(args, method, 1); !st.ok()) return st;
  auto needle = string_arg(arg(args, 0, "sub"), method);
  if (!needle.ok()) return needle.status();
  if (method == "count") {
    if (needle->empty()) return Value::integer(static_cast<int64_t>(utf8_length(self)) + 1);
    int64_t n = 0;
    for (size_t pos = self.find(*needle); pos != std::string::npos; pos = self.find(*needle, pos + needle->size())) {
      ++n;
    }
    return Value::integer(n);
  }
  bool reverse = method == "rfind" || method == "rindex";
  size_t hit = reverse ? self.rfind(*needle) : self.find(*needle);
  if (hit == std::string::npos) {
    if (method == "index" || method == "rindex") return absl::InvalidArgumentError("str.index(): substring not found");
    return Value::integer(-1);
  }
  return Value::integer(static_cast<int64_t>(utf8_length(std::string_view(self).substr(0, hit))));
}

absl::StatusOr<Value> join(const std::string& self, const CallArgs& args) {
  if (auto st = check_arity(args, "join", 1); !st.ok()) return st;
  const Value* a = arg(args, 0, "iterable");
  if (a == nullptr) return absl::InvalidArgumentError("str.join() takes one argument");
  std::vector<Value> items;
  if (a->is_array()) {
    items = a->items();
  } else if (a->is_string()) {
    for (char32_t cp : utf8_decode(a->as_string())) {
      std::string one;
      utf8_append(one, cp);
      items.push_back(Value::string(std::move(one)));
    }
  } else if (a->is_object()) {
    for (const auto& [k, v] : a->entries()) items.push_back(Value::string(k));
  } else {
    return absl::InvalidArgumentError(str_cat("str.join() cannot iterate over '", a->type_name(), "'"));
  }
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      return absl::InvalidArgumentError(
          str_cat("str.join(): sequence item ", i, ": expected str, found ", items[i].type_name()));
    }
    if (i > 0) out += self;
    out += items[i].as_string();
  }
  return Value::string(std::move(out));
}

absl::StatusOr<Value> classify(const std::string& self, std::string_view method) {
  std::vector<char32_t> cps = utf8_decode(self);
  if (method == "isspace") {
    return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), is_python_space));
  }
  bool all_ascii = std::all_of(cps.begin(), cps.end(), [](char32_t c) { return c < 0x80; });
  if (!all_ascii) {
    return absl::UnimplementedError(
        str_cat("str.", method, "() on non-ASCII text is not supported by this chat template engine"));
  }
  auto all = [&](auto pred) { return !cps.empty() && std::all_of(cps.begin(), cps.end(), pred); };
  if (method == "isdigit" || method == "isdecimal" || method == "isnumeric") {
    return Value::boolean(all([](char32_t c) { return c >= '0' && c <= '9'; }));
  }
  if (method == "isalpha") return Value::boolean(all([](char32_t c) { return std::isalpha(static_cast<int>(c)); }));
  if (method == "isalnum") return Value::boolean(all([](char32_t c) { return std::isalnum(static_cast<int>(c)); }));
  bool has_upper = std::any_of(cps.begin(), cps.end(), [](char32_t c) { return c >= 'A' && c <= 'Z'; });
  bool has_lower = std::any_of(cps.begin(), cps.end(), [](char32_t c) { return c >= 'a' && c <= 'z'; });
  if (method == "isupper") return Value::boolean(has_upper && !has_lower);
  return Value::boolean(has_lower && !has_upper);  // islower
}

}  // namespace

char32_t utf8_decode_one(std::string_view s, size_t pos, size_t* length) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char c = byte(pos);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || pos + n > s.size()) {
    *length = 1;
    return c;
  }
  char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t i = 1; i < n; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) {
      *length = 1;
      return c;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  *length = n;
  return cp;
}

std::vector<char32_t> utf8_decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    out.push_back(utf8_decode_one(s, i, &len));
    i += len;
  }
  return out;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(const std::vector<char32_t>& cps) {
  std::string out;
  for (char32_t cp : cps) utf8_append(out, cp);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    utf8_decode_one(s, i, &len);
    i += len;
    ++n;
  }
  return n;
}

bool is_python_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool is_str_method_name(std::string_view name) {
  return std::find(kStrMethods.begin(), kStrMethods.end(), name) != kStrMethods.end();
}

absl::StatusOr<Value> call_string_method(const std::string& self, std::string_view name, const CallArgs& args) {
  if (name == "strip") return strip(self, args, name, true, true);
  if (name == "lstrip") return strip(self, args, name, true, false);
  if (name == "rstrip") return strip(self, args, name, false, true);
  if (name == "split") return split(self, args, false);
  if (name == "rsplit") return split(self, args, true);
  if (name == "startswith") return affix_test(self, args, true);
  if (name == "endswith") return affix_test(self, args, false);
  if (name == "replace") return replace(self, args);
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    return search(self, args, name);
  }
  if (name == "join") return join(self, args);
  bool no_args = args.positional.empty() && args.keyword.empty();
  if (no_args) {
    if (name == "lower") return Value::string(change_case(self, false));
    if (name == "upper") return Value::string(change_case(self, true));
    if (name == "title") return Value::string(title_case(self));
    if (name == "capitalize") return Value::string(capitalize(self));
    if (name == "isspace" || name == "isdigit" || name == "isdecimal" || name == "isnumeric" || name == "isalpha" ||
        name == "isalnum" || name == "isupper" || name == "islower") {
      return classify(self, name);
    }
  }
  if (name == "removeprefix" || name == "removesuffix") {
    auto affix = string_arg(arg(args, 0, "prefix"), name);
    if (!affix.ok()) return affix.status();
    if (name == "removeprefix") {
      return Value::string(self.compare(0, affix->size(), *affix) == 0 ? self.substr(affix->size()) : self);
    }
    bool ends = self.size() >= affix->size() && self.compare(self.size() - affix->size(), affix->size(), *affix) == 0;
    return Value::string(ends ? self.substr(0, self.size() - affix->size()) : self);
  }
  return absl::UnimplementedError(
      str_cat("str.", name, "() with these arguments is not supported by this chat template engine"));
}

}  // namespace bm::engine
