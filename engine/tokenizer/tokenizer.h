#pragma once
// Byte-level BPE tokenizer of the Qwen2.5 / QwQ / DeepSeek-R1-Distill families, loaded from a model folder
// (tokenizer.json, or vocab.json + merges.txt + tokenizer_config.json) and exact against Hugging Face
// `tokenizers`. See docs/tokenizer.md.
//
// encode(): invalid UTF-8 in the input is first replaced with U+FFFD (one per maximal invalid subpart, as
// Rust's String::from_utf8_lossy does), since Hugging Face only ever sees valid strings.
// Thread-safe: every const member may be called concurrently.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/pre_tokenizer.h"

namespace bm::engine {

class BpeModel;
struct TokenizerSpec;

class Tokenizer {
 public:
  // model_dir holds tokenizer.json, or vocab.json + merges.txt (+ tokenizer_config.json).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> load(const std::filesystem::path& model_dir);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special_tokens: add what the post-processor adds (R1-Distill: BOS). Added-token text in `text` is
  // always recognised, as in Hugging Face.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // Ids unknown to the tokenizer are skipped; bytes that do not form UTF-8 come out as U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  int32_t vocab_size() const;  // including added tokens
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // empty for an unknown id
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const { return bos_id_; }  // from tokenizer_config
  std::optional<int32_t> eos_id() const { return eos_id_; }

  // The raw bytes `id` contributes to decoded text (empty for unknown ids and, when skipping, specials).
  std::string_view token_bytes(int32_t id, bool skip_special_tokens) const;

 private:
  explicit Tokenizer(TokenizerSpec spec, std::unique_ptr<BpeModel> model);
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
  // Hugging Face shows (and decodes) a normalized added token in its normalized form.
  std::string display_text(const AddedToken& token) const;

  std::unique_ptr<BpeModel> model_;
  SplitPattern split_pattern_;
  bool nfc_ = false;
  std::vector<AddedToken> added_tokens_;
  AddedTokenMatcher raw_matcher_;         // added tokens matched on the input
  AddedTokenMatcher normalized_matcher_;  // added tokens matched after normalization
  std::vector<int32_t> prefix_ids_;
  std::vector<int32_t> suffix_ids_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  int32_t vocab_size_ = 0;
  std::vector<std::string> decoded_bytes_;  // by id
  std::vector<uint8_t> id_kind_;            // by id: 0 unknown, 1 ordinary, 2 special added token
};

}  // namespace bm::engine
