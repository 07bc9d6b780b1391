#pragma once
// The committed corpus (tests/data/tokenizer/corpus.txt) and Hugging Face's expectations for it, written by
// tests/tools/tokenizer_gen_corpus.py and tests/tools/tokenizer_gen_expectations.py.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/engine/tokenizer/test_paths.h"

namespace bm::engine::testing {

inline constexpr std::string_view kRecordSeparator = "\n=====bmserver-tokenizer-record=====\n";

inline std::string read_binary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> corpus_records() {
  const std::string text = read_binary(tokenizer_data_dir() / "corpus.txt");
  std::vector<std::string> records;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(kRecordSeparator, start);
    records.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + kRecordSeparator.size();
  }
  return records;
}

struct Expectation {
  size_t num_ids = 0;
  uint64_t ids_hash = 0;
  uint64_t text_hash = 0;          // decode(ids, skip_special_tokens = false)
  uint64_t skipped_text_hash = 0;  // decode(ids, skip_special_tokens = true)
};

inline std::vector<Expectation> expectations(const std::string& name) {
  std::ifstream in(tokenizer_data_dir() / ("expected_" + name + ".txt"));
  std::vector<Expectation> out;
  Expectation e;
  while (in >> std::dec >> e.num_ids >> std::hex >> e.ids_hash >> e.text_hash >> e.skipped_text_hash) {
    out.push_back(e);
  }
  return out;
}

// Full ids of the first records, for diagnosing a mismatch.
inline std::vector<std::vector<int32_t>> expected_ids(const std::string& name) {
  std::ifstream in(tokenizer_data_dir() / ("expected_" + name + "_ids.txt"));
  std::vector<std::vector<int32_t>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<int32_t> ids;
    int32_t id = 0;
    while (fields >> id) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

}  // namespace bm::engine::testing
