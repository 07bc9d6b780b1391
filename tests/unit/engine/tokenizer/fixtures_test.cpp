// Tokenizer folders that transformers / tokenizers wrote at test time
// (tests/tools/tokenizer_make_fixtures.py): the tokenizer.json form of every family, the vocab.json +
// merges.txt form of QwQ and R1-Distill-Qwen, added tokens with lstrip / rstrip / single_word / normalized
// flags. Each is compared with what Hugging Face made of the same texts in the same folder.
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/engine/tokenizer/corpus.h"
#include "tests/unit/engine/tokenizer/tokenizer_test_util.h"

namespace bm::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const json* fixture_expectations() {
  static const json parsed = [] {
    const fs::path path = testing::fixtures_dir() / "expected.json";
    if (!fs::exists(path)) return json();
    return json::parse(testing::read_binary(path), nullptr, false);
  }();
  return parsed.is_object() ? &parsed : nullptr;
}

struct Case {
  const char* folder;           // the folder loaded
  const char* expected_folder;  // whose Hugging Face results it must reproduce
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.folder;
}

class FixtureTest : public ::testing::TestWithParam<Case> {};

std::vector<int32_t> ids_of(const json& list) {
  return list.get<std::vector<int32_t>>();
}

TEST_P(FixtureTest, MatchesHuggingFace) {
  const Case& c = GetParam();
  const json* all = fixture_expectations();
  if (all == nullptr)
    GTEST_SKIP() << "no " << testing::fixtures_dir() / "expected.json"
                 << " (fixture not run)";
  auto tok = Tokenizer::load(testing::fixtures_dir() / c.folder);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const json& expected = (*all)[c.expected_folder];
  EXPECT_EQ((*tok)->bos_id(), c.bos_id);
  EXPECT_EQ((*tok)->eos_id(), c.eos_id);
  if (std::string(c.folder) == c.expected_folder) {
    EXPECT_EQ((*tok)->vocab_size(), expected["vocab_size"].get<int32_t>());
  }
  int num_failures = 0;
  for (const json& cs : expected["cases"]) {
    const std::string text = cs["text"].get<std::string>();
    const std::vector<int32_t> ids = (*tok)->encode(text, false);
    const bool ok = ids == ids_of(cs["ids"]) && (*tok)->encode(text, true) == ids_of(cs["ids_with_special"]) &&
                    (*tok)->decode(ids, false) == cs["decode"].get<std::string>() &&
                    (*tok)->decode(ids, true) == cs["decode_skip"].get<std::string>();
    if (!ok && ++num_failures <= 5) {
      ADD_FAILURE() << c.folder << ": '" << text << "'\nours: " << ::testing::PrintToString(ids)
                    << "\nwant: " << cs["ids"].dump() << " with special " << cs["ids_with_special"].dump()
                    << "\ndecode: '" << (*tok)->decode(ids, false) << "' want " << cs["decode"].dump() << "\nskip: '"
                    << (*tok)->decode(ids, true) << "' want " << cs["decode_skip"].dump();
    }
  }
  EXPECT_EQ(num_failures, 0);
}

INSTANTIATE_TEST_SUITE_P(Folders, FixtureTest,
                         ::testing::Values(Case{"qwen2.5-json", "qwen2.5-json", std::nullopt, 151645},
                                           Case{"qwq-json", "qwq-json", std::nullopt, 151645},
                                           Case{"qwq-vocab", "qwq-json", std::nullopt, 151645},
                                           Case{"vl-json", "vl-json", std::nullopt, 151645},
                                           Case{"vl-vocab", "vl-json", std::nullopt, 151645},
                                           Case{"r1-qwen-json", "r1-qwen-json", 151646, 151643},
                                           Case{"r1-qwen-vocab", "r1-qwen-json", 151646, 151643},
                                           Case{"r1-llama-json", "r1-llama-json", 128000, 128001},
                                           Case{"flags-json", "flags-json", std::nullopt, std::nullopt}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.folder;
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

// The tokenizer.json that transformers writes and the vocab.json + merges.txt it was made from agree on the
// whole corpus.
TEST(FixtureCorpusTest, TokenizerJsonFormMatchesVocabFormOnCorpus) {
  if (fixture_expectations() == nullptr) GTEST_SKIP() << "fixture not run";
  BM_REQUIRE_TOKENIZER(vocab_form, testing::qwen_tokenizer);
  auto json_form = Tokenizer::load(testing::fixtures_dir() / "qwen2.5-json");
  ASSERT_TRUE(json_form.ok()) << json_form.status();
  const std::vector<std::string> records = testing::corpus_records();
  size_t num_mismatches = 0;
  for (const std::string& record : records) {
    if ((*json_form)->encode(record, false) != vocab_form->encode(record, false)) ++num_mismatches;
  }
  EXPECT_EQ(num_mismatches, 0u) << "of " << records.size();
}

}  // namespace
}  // namespace bm::engine
