// 100% agreement with Hugging Face `tokenizers` on the committed 2.2 MB corpus: ids, decode, decode skipping
// special tokens, and the round trip.
#include <string>
#include <thread>
#include <vector>

#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/corpus.h"
#include "tests/unit/engine/tokenizer/tokenizer_test_util.h"

namespace bm::engine {
namespace {

using testing::corpus_records;
using testing::hash_bytes;
using testing::hash_ids;

std::string show_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

void check_corpus(const Tokenizer& tok, const std::string& name, bool normalizes) {
  const std::vector<std::string> records = corpus_records();
  const std::vector<testing::Expectation> expected = testing::expectations(name);
  const std::vector<std::vector<int32_t>> full = testing::expected_ids(name);
  ASSERT_GT(records.size(), 1000u);
  ASSERT_EQ(records.size(), expected.size()) << "regenerate with tests/tools/tokenizer_gen_expectations.py";
  size_t num_mismatches = 0;
  size_t num_bytes = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    num_bytes += records[i].size();
    const std::vector<int32_t> ids = tok.encode(records[i], false);
    const std::string text = tok.decode(ids, false);
    const std::string skipped = tok.decode(ids, true);
    const testing::Expectation& e = expected[i];
    const bool ok = ids.size() == e.num_ids && hash_ids(ids) == e.ids_hash && hash_bytes(text) == e.text_hash &&
                    hash_bytes(skipped) == e.skipped_text_hash;
    // Valid UTF-8 input comes back exactly (after NFC where the tokenizer normalizes).
    EXPECT_EQ(text, normalizes ? nfc(records[i]) : records[i]) << name << " record " << i << " round trip";
    if (ok) continue;
    if (++num_mismatches > 10) continue;
    ADD_FAILURE() << name << " record " << i << " differs from Hugging Face: " << ids.size() << " ids (want "
                  << e.num_ids << ")\ntext: '" << records[i] << "'\nours: " << show_ids(ids)
                  << (i < full.size() ? "\nwant: " + show_ids(full[i]) : std::string());
  }
  EXPECT_EQ(num_mismatches, 0u) << "of " << records.size() << " records";
  EXPECT_GT(num_bytes, 2'000'000u);
}

TEST(CorpusTest, QwenMatchesHuggingFace) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  check_corpus(*tok, "qwen2.5", /*normalizes=*/true);
}

TEST(CorpusTest, LlamaMatchesHuggingFace) {
  BM_REQUIRE_TOKENIZER(tok, testing::llama_tokenizer);
  check_corpus(*tok, "r1-distill-llama", /*normalizes=*/false);
}

TEST(CorpusTest, FullIdsOfFirstRecordsMatch) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  const std::vector<std::string> records = corpus_records();
  const std::vector<std::vector<int32_t>> full = testing::expected_ids("qwen2.5");
  ASSERT_GT(full.size(), 100u);
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(tok->encode(records[i], false), full[i]) << "record " << i;
}

// encode() is const and may run on many threads at once (the pre-token cache is shared).
TEST(CorpusTest, ConcurrentEncodeMatchesSerial) {
  BM_REQUIRE_TOKENIZER(tok, testing::qwen_tokenizer);
  const std::vector<std::string> records = corpus_records();
  std::vector<std::vector<int32_t>> serial;
  for (const std::string& record : records) serial.push_back(tok->encode(record, false));
  constexpr int kNumThreads = 4;
  std::vector<size_t> num_mismatches(kNumThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kNumThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread walks the corpus from a different place so that they race on the same cache entries.
      for (size_t k = 0; k < records.size(); ++k) {
        const size_t i = (k + t * records.size() / kNumThreads) % records.size();
        if (tok->encode(records[i], false) != serial[i]) ++num_mismatches[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kNumThreads; ++t) EXPECT_EQ(num_mismatches[t], 0u) << "thread " << t;
}

}  // namespace
}  // namespace bm::engine
