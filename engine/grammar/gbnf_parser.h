#pragma once
// llama.cpp's GBNF, the grammar dialect of `guided_grammar` (docs/structured-output.md): rules `name ::= ...`,
// the start rule `root`, string literals "..." with \n \r \t \\ \" \xHH \uHHHH \UHHHHHHHH escapes, character
// classes [a-z] and [^...] over Unicode code points, `.` (any character), rule references, grouping ( ),
// alternation |, quantifiers * + ? {m} {m,} {m,n}, and # comments. Rules may span lines. Not supported (a
// sentence naming it): llama.cpp's token references <[id]>, and left recursion (write it with * or +).
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/grammar/grammar.h"

namespace bm::engine::grammar {

absl::StatusOr<Grammar> parse_gbnf(std::string_view text);

}  // namespace bm::engine::grammar
