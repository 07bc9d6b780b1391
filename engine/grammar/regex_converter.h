#pragma once
// Regular expressions (the subset JSON Schema `pattern` and vLLM's `guided_regex` use, in Python / ECMAScript
// syntax) as grammar expressions over UTF-8 bytes. Supported: literals and escapes (\n \t \r \f \v \0 \xHH
// \uHHHH, escaped punctuation), classes [...] and [^...] with ranges, \d \w \s \D \W \S, `.` (any character but
// newline), groups ( ) (?: ) (?P<name> ) (?<name> ), alternation |, quantifiers * + ? {m} {m,} {m,n} (lazy forms
// accepted: they match the same strings), and ^ / $ at the very start / end. Refused with a sentence naming the
// construct: backreferences, lookaround, word boundaries, inline flags, possessive quantifiers, counts over 1000.
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/grammar/grammar.h"

namespace bm::engine::grammar {

struct RegexOptions {
  // The text lands inside a JSON string: characters that JSON must escape (", \, control characters) are produced
  // in their escaped form, so a pattern over the decoded string yields a valid JSON string literal's content.
  bool json_string = false;
};

// An expression matching the strings the whole pattern matches (a full match: ^ and $ are implied).
absl::StatusOr<int32_t> regex_to_expr(Grammar& g, std::string_view pattern, const RegexOptions& options = {});

}  // namespace bm::engine::grammar
