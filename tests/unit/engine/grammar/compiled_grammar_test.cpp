#include "engine/grammar/compiled_grammar.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "engine/grammar/gbnf_parser.h"
#include "engine/grammar/grammar_request.h"
#include "engine/grammar/json_schema_converter.h"
#include "engine/grammar/unicode_ranges.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/grammar/grammar_test_util.h"

namespace bm::engine::grammar {
namespace {

using ::testing::HasSubstr;

// The mask from the trie walk equals advancing the configuration by each token's bytes on its own, along random
// walks through the grammar (recursion, repetition, Unicode, multi-byte tokens).
TEST(CompiledGrammar, TrieMaskEqualsTokenByTokenCheck) {
  absl::StatusOr<Grammar> g = json_schema_to_grammar(
      R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
          "tags": {"type": "array", "items": {"enum": ["a", "b\"c"]}}, "n": {"type": "integer", "minimum": -3},
          "child": {"$ref": "#"}}, "required": ["name"]})");
  ASSERT_TRUE(g.ok()) << g.status();
  auto c = testing::compile_or_die(*g);
  const TokenVocabulary& v = c->vocabulary();
  std::mt19937 rng(7);
  for (int walk = 0; walk < 20; ++walk) {
    int32_t config = c->start();
    for (int step = 0; step < 60 && c->can_continue(config); ++step) {
      std::shared_ptr<const TokenSet> mask = c->allowed_tokens(config);
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < v.vocab_size(); ++id) {
        const bool ok = !v.token_bytes(id).empty() && c->advance(config, v.token_bytes(id)) != CompiledGrammar::kDead;
        EXPECT_EQ(mask->allows(id), ok) << "token " << id << " '" << v.token_bytes(id) << "' at step " << step;
        if (ok) allowed.push_back(id);
      }
      EXPECT_EQ(mask->num_allowed, static_cast<int32_t>(allowed.size()));
      ASSERT_FALSE(allowed.empty());
      config = c->advance(config, v.token_bytes(allowed[rng() % allowed.size()]));
    }
  }
  EXPECT_GT(c->num_cached_masks(), 0);
}

// A vocabulary with many multi-byte tokens: every byte, then seeded random strings over plain text, JSON
// punctuation, escapes, UTF-8 characters and their fragments, 1 to 24 bytes long (long plain runs reach the counted
// bounds of maxLength and the formats' {m,n}).
std::shared_ptr<const TokenVocabulary> mixed_vocabulary() {
  std::vector<std::string> bytes(256);
  for (int b = 1; b < 256; ++b) bytes[b] = std::string(1, static_cast<char>(b));
  const std::vector<std::string> pieces = {"a",
                                           "b",
                                           "Z",
                                           "0",
                                           "7",
                                           " ",
                                           "-",
                                           ".",
                                           "@",
                                           "_",
                                           "+",
                                           ":",
                                           "/",
                                           "T",
                                           "\"",
                                           "\\",
                                           "\\n",
                                           "\\u00",
                                           ",",
                                           "{",
                                           "}",
                                           "[",
                                           "]",
                                           "\n",
                                           "\xc3\xa9",
                                           "\xe4\xb8\xad",
                                           "\xf0\x9f\x98\x80",
                                           "\xc3",
                                           "\xa9",
                                           "\x1f",
                                           "e",
                                           "x"};
  std::mt19937 rng(11);
  for (int i = 0; i < 2500; ++i) {
    std::string t;
    const size_t length = 1 + rng() % 24;
    // Mostly plain text, as in a real vocabulary.
    while (t.size() < length) t += rng() % 3 ? pieces[rng() % 14] : pieces[rng() % pieces.size()];
    bytes.push_back(t);
  }
  const int32_t n = static_cast<int32_t>(bytes.size());
  return std::make_shared<const TokenVocabulary>(std::move(bytes), n + 3);
}

// At every step of `walks` seeded random walks of up to `steps` tokens: the mask allowed_tokens() returns (text
// settled by length) is the full trie walk's, bit for bit, and both equal advancing by each token on its own.
// Returns the steps checked.
int64_t expect_masks_match(const CompiledGrammar& c, std::mt19937& rng, int walks, int steps, const std::string& what) {
  const TokenVocabulary& v = c.vocabulary();
  int64_t steps_checked = 0;
  for (int walk = 0; walk < walks; ++walk) {
    int32_t config = c.start();
    for (int step = 0; step < steps && c.can_continue(config); ++step) {
      std::shared_ptr<const TokenSet> mask = c.allowed_tokens(config);
      std::shared_ptr<const TokenSet> reference = c.allowed_tokens_by_full_walk(config);
      EXPECT_EQ(mask->rejected, reference->rejected) << what << " walk " << walk << " step " << step;
      EXPECT_EQ(mask->ids, reference->ids) << what << " walk " << walk << " step " << step;
      EXPECT_EQ(mask->num_allowed, reference->num_allowed) << what << " walk " << walk << " step " << step;
      if (::testing::Test::HasFailure()) return steps_checked;
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < v.vocab_size(); ++id) {
        const bool ok = !v.token_bytes(id).empty() && c.advance(config, v.token_bytes(id)) != CompiledGrammar::kDead;
        EXPECT_EQ(mask->allows(id), ok) << what << " token '" << v.token_bytes(id) << "' at step " << step;
        if (mask->allows(id) != ok) return steps_checked;
        if (ok) allowed.push_back(id);
      }
      ++steps_checked;
      if (allowed.empty()) break;
      // Long tokens now and then, so that walks reach the counted bounds.
      int32_t pick = allowed[rng() % allowed.size()];
      for (int tries = 0; tries < 4 && v.token_bytes(pick).size() < 8; ++tries) pick = allowed[rng() % allowed.size()];
      config = c.advance(config, v.token_bytes(pick));
    }
  }
  return steps_checked;
}

// A vocabulary of text beyond ASCII: every byte, then seeded random strings of plain text, whole characters of
// every UTF-8 length and lead byte kind (C2-DF, E0, E1-EC, ED, EE-EF, F0, F1-F3, F4), pieces of characters,
// invalid sequences (overlong, surrogate, past U+10FFFF, stray continuation bytes), escapes and JSON punctuation.
std::shared_ptr<const TokenVocabulary> text_vocabulary() {
  std::vector<std::string> bytes(256);
  for (int b = 1; b < 256; ++b) bytes[b] = std::string(1, static_cast<char>(b));
  const std::vector<std::string> characters = {"\xc3\xa9",
                                               "\xd0\xb0",
                                               "\xd1\x8f",
                                               "\xe4\xb8\xad",
                                               "\xe6\x96\x87",
                                               "\xe3\x80\x82",
                                               "\xe0\xa4\x85",
                                               "\xed\x9f\xbf",
                                               "\xef\xbc\x8c",
                                               "\xf0\x9f\x98\x80",
                                               "\xf0\x9f\x98\x81",
                                               "\xf3\xa0\x80\x81",
                                               "\xf4\x8f\xbf\xbf",
                                               "a",
                                               "b",
                                               "z",
                                               "A",
                                               "0",
                                               " ",
                                               "-"};
  const std::vector<std::string> others = {"\"",
                                           "\\",
                                           "\\n",
                                           "\\u4e2d",
                                           "\n",
                                           "\x01",
                                           "\x7f",
                                           "{",
                                           "}",
                                           ":",
                                           ",",
                                           "\xe4",
                                           "\xe4\xb8",
                                           "\xf0\x9f",
                                           "\xf0\x9f\x98",
                                           "\xb8",
                                           "\xad",
                                           "\xc0\xaf",
                                           "\xed\xa0\x80",
                                           "\xf5",
                                           "\xff",
                                           "\xe0\x80",
                                           "\xf4\x90"};
  std::mt19937 rng(13);
  for (int i = 0; i < 3000; ++i) {
    std::string t;
    const size_t length = 1 + rng() % 20;
    // Mostly whole characters, as a CJK-heavy vocabulary has; some tokens end in a piece of one.
    while (t.size() < length) t += rng() % 5 ? characters[rng() % characters.size()] : others[rng() % others.size()];
    bytes.push_back(t);
  }
  const int32_t n = static_cast<int32_t>(bytes.size());
  return std::make_shared<const TokenVocabulary>(std::move(bytes), n + 3);
}

// Every schema of the structured-output corpus, with the mixed vocabulary and the one of text beyond ASCII.
TEST(CompiledGrammar, MaskEqualsFullWalkAndTokenByTokenOverCorpus) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  const std::filesystem::path dir = std::filesystem::path(source) / "tests/data/structured_output/schemas";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 100u);
  std::mt19937 rng(2026);
  for (const std::shared_ptr<const TokenVocabulary>& vocabulary : {mixed_vocabulary(), text_vocabulary()}) {
    int64_t steps_checked = 0, by_text = 0, by_class = 0;
    for (const auto& file : files) {
      std::ifstream in(file);
      std::stringstream text;
      text << in.rdbuf();
      absl::StatusOr<Grammar> g = json_schema_to_grammar(text.str());
      if (!g.ok()) continue;  // refused schemas are the converter's tests
      absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::compile(*g, vocabulary);
      ASSERT_TRUE(c.ok()) << file << ": " << c.status();
      steps_checked += expect_masks_match(**c, rng, 3, 40, file.string());
      ASSERT_FALSE(HasFailure());
      by_text += (*c)->mask_counts().by_text;
    }
    EXPECT_GT(steps_checked, 3000);
    EXPECT_GT(by_text, 50);  // strings, counted or not
  }
}

// Text settled by its character count (strings, maxLength, patterns over non-ASCII classes, characters told apart
// by a choice or a class, a grammar whose piece of a character lives where whole ones die), plain text by length,
// or a class of plain bytes by length (email, hostname, counted ASCII classes): the masks equal the full walk and
// the token-by-token check at every step, and each case takes the shortcut it should.
TEST(CompiledGrammar, TextAndClassesSettledByLengthEqualFullWalk) {
  std::shared_ptr<const TokenVocabulary> vocabulary = text_vocabulary();
  struct Case {
    GrammarKind kind;
    std::string text;
    bool by_text;        // some mask settles whole characters by count
    bool by_plain_text;  // some mask settles plain text only (the configuration tells characters apart)
    bool by_class;       // some mask settles a class of plain bytes (the configuration tells plain bytes apart)
  };
  const std::vector<Case> cases = {
      {GrammarKind::kJsonSchema, R"({"type": "string"})", true, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "maxLength": 3})", true, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "minLength": 2, "maxLength": 6})", true, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "maxLength": 40})", true, false, false},
      {GrammarKind::kJsonSchema,
       R"({"type": "object", "properties": {"\u540d": {"type": "string", "maxLength": 4}, "tags": {"type": "array",
          "items": {"type": "string", "maxLength": 2}, "maxItems": 3}}, "required": ["\u540d"]})",
       true, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "pattern": "^.{0,5}$"})", true, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "pattern": "^[\u0430-\u044f]{2,4}$"})", false, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "pattern": "^[^a-z]{1,4}$"})", false, false, true},
      {GrammarKind::kJsonSchema, R"({"type": "string", "pattern": "^[^\u00e9]{0,4}$"})", false, true, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "pattern": "^[\u4e00-\u9fff]+x?$"})", false, false, false},
      {GrammarKind::kJsonSchema, R"({"enum": ["\u4e2d\u6587", "\u00e9", "\ud83d\ude00\ud83d\ude01", "a"]})", false,
       false, false},
      {GrammarKind::kRegex, "(\u4e2d|\u6587|\U0001F600)+[a-z]{0,3}", false, false, true},
      {GrammarKind::kGbnf, R"(root ::= ([^\n] | "\\" [a-z]){0,5})", true, false, false},
      {GrammarKind::kGbnf, R"(root ::= [^\x00-\x1f"\\]* ".")", false, false, true},
      {GrammarKind::kGbnf, R"(root ::= [^\u00e9]{0,4})", false, true, false},
      {GrammarKind::kJsonObject, "", true, false, false},
      {GrammarKind::kJsonSchema, R"({"type": "string", "format": "email"})", false, false, true},
      {GrammarKind::kJsonSchema, R"({"type": "string", "format": "hostname"})", false, false, true},
      {GrammarKind::kRegex, "[a-z0-9]{0,10}(-[0-9]{2,12})?", false, false, true},
  };
  std::mt19937 rng(2027);
  for (const Case& k : cases) {
    GrammarRequest request{k.kind, k.text, {}, std::nullopt};
    absl::StatusOr<Grammar> g = build_grammar(request);
    ASSERT_TRUE(g.ok()) << k.text << ": " << g.status();
    absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::compile(*g, vocabulary);
    ASSERT_TRUE(c.ok()) << k.text << ": " << c.status();
    const int64_t steps = expect_masks_match(**c, rng, 12, 30, k.text);
    ASSERT_FALSE(HasFailure());
    EXPECT_GT(steps, 10) << k.text;
    EXPECT_EQ((*c)->mask_counts().by_text > 0, k.by_text) << k.text;
    EXPECT_EQ((*c)->mask_counts().by_plain_text > 0, k.by_plain_text) << k.text;
    EXPECT_EQ((*c)->mask_counts().by_class > 0, k.by_class) << k.text;
  }
}

// Up to three characters then a lone lead byte E4 (a piece of a character, allowed on its own): after three
// characters whole ones die but that piece lives, so tokens ending in a piece cannot be settled by their count
// there ("abc\xe4" is allowed though it counts four).
TEST(CompiledGrammar, PieceOfCharacterAliveWhereWholeOnesDieIsWalked) {
  Grammar g;
  const int32_t root = g.add_rule("root");
  const int32_t character = codepoints_expr(g, {{0x20, 0x21}, {0x23, 0x5b}, {0x5d, kMaxCodepoint}});
  g.set_body(root, g.sequence({g.repeat(character, 0, 3), g.bytes(ByteClass::of(0xe4))}));
  g.set_root(root);
  std::vector<std::string> bytes = {"",
                                    "a",
                                    "ab",
                                    "abc",
                                    "abcd",
                                    "abc\xe4",
                                    "ab\xe4",
                                    "\xe4",
                                    "\xe4\xb8\xad",
                                    "\xe4\xb8\xad\xe4",
                                    "\xe4\xb8\xad\xe4\xb8",
                                    "\xe6\x96\x87"
                                    "ab\xe4",
                                    "\xe6\x96\x87"
                                    "abc\xe4"};
  const int32_t n = static_cast<int32_t>(bytes.size());
  auto vocabulary = std::make_shared<const TokenVocabulary>(std::move(bytes), n);
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c = CompiledGrammar::compile(g, vocabulary);
  ASSERT_TRUE(c.ok()) << c.status();
  std::shared_ptr<const TokenSet> mask = (*c)->allowed_tokens((*c)->start());
  EXPECT_EQ(mask->ids, (*c)->allowed_tokens_by_full_walk((*c)->start())->ids);
  EXPECT_EQ((*c)->mask_counts().by_plain_text, 1);
  for (int32_t id : {1, 2, 3, 5, 6, 7, 8, 9, 10, 11}) EXPECT_TRUE(mask->allows(id)) << vocabulary->token_bytes(id);
  for (int32_t id : {4, 12}) EXPECT_FALSE(mask->allows(id)) << vocabulary->token_bytes(id);
}

TEST(CompiledGrammar, MaskAppliesToLogitsAndBitmask) {
  absl::StatusOr<Grammar> g = parse_gbnf(R"(root ::= "ab" | "abc" | "x")");
  ASSERT_TRUE(g.ok());
  auto c = testing::compile_or_die(*g);
  std::shared_ptr<const TokenSet> mask = c->allowed_tokens(c->start());
  const int32_t vocab = c->vocabulary().vocab_size();
  std::vector<float> logits(static_cast<size_t>(vocab) + 5, 1.0f);  // a row wider than the tokenizer
  mask->apply(logits);
  std::vector<uint32_t> words((logits.size() + 31) / 32);
  mask->fill_bitmask(words);
  for (int32_t id = 0; id < static_cast<int32_t>(logits.size()); ++id) {
    const bool allowed = id < vocab && !c->vocabulary().token_bytes(id).empty() &&
                         (c->vocabulary().token_bytes(id) == "a" || c->vocabulary().token_bytes(id) == "x" ||
                          c->vocabulary().token_bytes(id) == "ab" || c->vocabulary().token_bytes(id) == "abc");
    EXPECT_EQ(logits[id] == 1.0f, allowed) << id;
    EXPECT_EQ(static_cast<bool>((words[id / 32] >> (id % 32)) & 1), allowed) << id;
  }
}

TEST(CompiledGrammar, SizeLimitIsAnError) {
  absl::StatusOr<Grammar> g = parse_gbnf(R"(root ::= ("a"{1000}){1000})");
  ASSERT_TRUE(g.ok());
  absl::StatusOr<std::shared_ptr<const CompiledGrammar>> c =
      CompiledGrammar::compile(*g, testing::byte_vocabulary(), CompileLimits{.max_states = 100000});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("too large"));
}

}  // namespace
}  // namespace bm::engine::grammar
