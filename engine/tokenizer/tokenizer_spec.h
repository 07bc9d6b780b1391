#pragma once
// What a tokenizer folder says, independent of its file format (tokenizer.json, or vocab.json + merges.txt +
// tokenizer_config.json). Only the byte-level BPE families are representable; the reader rejects the rest.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/pre_tokenizer.h"

namespace bm::engine {

struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  bool ignore_merges = false;
  bool nfc = false;
  SplitPattern split_pattern = SplitPattern::kQwen2;
  std::vector<AddedToken> added_tokens;
  std::vector<int32_t> prefix_ids;  // added by encode(add_special_tokens = true)
  std::vector<int32_t> suffix_ids;
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
};

absl::StatusOr<TokenizerSpec> read_tokenizer_spec(const std::filesystem::path& model_dir);

}  // namespace bm::engine
