#include "engine/tokenizer/tokenizer.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/tokenizer_spec.h"
#include "engine/tokenizer/utf8.h"

namespace bm::engine {
namespace {

constexpr uint8_t kUnknown = 0;
constexpr uint8_t kOrdinary = 1;
constexpr uint8_t kSpecial = 2;

// What Hugging Face's ByteLevel decoder makes of one token: its bytes when every character is in the
// byte-level alphabet, else its UTF-8 text as is (e.g. "<｜User｜>").
std::string decoded_token(std::string_view token) {
  std::optional<std::string> bytes = byte_level::token_to_bytes(token);
  return bytes ? *std::move(bytes) : std::string(token);
}

AddedTokenMatcher make_matcher(const std::vector<AddedToken>& all, bool normalized, bool nfc) {
  std::vector<AddedToken> tokens;
  std::vector<std::string> patterns;
  for (const AddedToken& token : all) {
    if (token.normalized != normalized) continue;
    tokens.push_back(token);
    patterns.push_back(normalized && nfc ? bm::engine::nfc(token.content) : token.content);
  }
  return AddedTokenMatcher(tokens, patterns);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::load(const std::filesystem::path& model_dir) {
  absl::StatusOr<TokenizerSpec> spec = read_tokenizer_spec(model_dir);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::unique_ptr<BpeModel>> model = BpeModel::create(spec->vocab, spec->merges, spec->ignore_merges);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(model_dir.string(), ": ", model.status().message()));
  }
  for (const AddedToken& token : spec->added_tokens) {
    if (token.id < 0 || token.content.empty() || !utf8::is_valid(token.content)) {
      return absl::InvalidArgumentError(
          absl::StrCat(model_dir.string(), ": added token ", token.id, " has a negative id or no valid text"));
    }
  }
  spec->vocab.clear();
  spec->vocab.shrink_to_fit();
  spec->merges.clear();
  spec->merges.shrink_to_fit();
  return std::unique_ptr<Tokenizer>(new Tokenizer(*std::move(spec), *std::move(model)));
}

Tokenizer::Tokenizer(TokenizerSpec spec, std::unique_ptr<BpeModel> model)
    : model_(std::move(model)),
      split_pattern_(spec.split_pattern),
      nfc_(spec.nfc),
      added_tokens_(std::move(spec.added_tokens)),
      raw_matcher_(make_matcher(added_tokens_, /*normalized=*/false, nfc_)),
      normalized_matcher_(make_matcher(added_tokens_, /*normalized=*/true, nfc_)),
      prefix_ids_(std::move(spec.prefix_ids)),
      suffix_ids_(std::move(spec.suffix_ids)) {
  int32_t max_id = model_->max_id();
  for (const AddedToken& token : added_tokens_) max_id = std::max(max_id, token.id);
  decoded_bytes_.resize(static_cast<size_t>(max_id + 1));
  id_kind_.assign(static_cast<size_t>(max_id + 1), kUnknown);
  for (int32_t id = 0; id <= model_->max_id(); ++id) {
    if (!model_->has_id(id)) continue;
    decoded_bytes_[id] = decoded_token(model_->id_to_token(id));
    id_kind_[id] = kOrdinary;
  }
  // Hugging Face counts the distinct token texts of the vocabulary and the added tokens.
  absl::flat_hash_set<std::string> extra_texts;
  // An added token overrides the vocabulary entry with its id, as in Hugging Face's decode().
  for (const AddedToken& token : added_tokens_) {
    decoded_bytes_[token.id] = decoded_token(display_text(token));
    id_kind_[token.id] = token.special ? kSpecial : kOrdinary;
    if (!model_->token_to_id(token.content)) extra_texts.insert(token.content);
  }
  vocab_size_ = model_->num_tokens() + static_cast<int32_t>(extra_texts.size());
  if (spec.bos_token) bos_id_ = token_to_id(*spec.bos_token);
  if (spec.eos_token) eos_id_ = token_to_id(*spec.eos_token);
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + prefix_ids_.size() + suffix_ids_.size() + 1);
  if (add_special_tokens) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  if (utf8::is_valid(text)) {
    encode_text(text, ids);
  } else {
    encode_text(utf8::sanitize(text), ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::vector<AddedTokenMatcher::Segment> segments;
  const size_t first = segments.size();  // encode_text does not nest, but keep the buffer reentrant-safe
  raw_matcher_.split(text, segments);
  const size_t last = segments.size();
  for (size_t i = first; i < last; ++i) {
    const AddedTokenMatcher::Segment seg = segments[i];
    if (seg.id != AddedTokenMatcher::kText) {
      out.push_back(seg.id);
      continue;
    }
    const std::string_view piece = text.substr(seg.begin, seg.end - seg.begin);
    if (nfc_ && !is_nfc_quick(piece)) {
      encode_normalized(nfc(piece), out);
    } else {
      encode_normalized(piece, out);
    }
  }
  segments.resize(first);
}

void Tokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::vector<std::string_view> pieces;
  auto encode_plain = [&](std::string_view plain) {
    pieces.clear();
    pre_tokenize(split_pattern_, plain, pieces);
    for (std::string_view piece : pieces) model_->encode(piece, out);
  };
  if (normalized_matcher_.empty()) {
    encode_plain(text);
    return;
  }
  std::vector<AddedTokenMatcher::Segment> segments;
  normalized_matcher_.split(text, segments);
  for (const AddedTokenMatcher::Segment& seg : segments) {
    if (seg.id != AddedTokenMatcher::kText) {
      out.push_back(seg.id);
    } else {
      encode_plain(text.substr(seg.begin, seg.end - seg.begin));
    }
  }
}

std::string_view Tokenizer::token_bytes(int32_t id, bool skip_special_tokens) const {
  if (id < 0 || static_cast<size_t>(id) >= id_kind_.size()) return {};
  const uint8_t kind = id_kind_[id];
  if (kind == kUnknown || (kind == kSpecial && skip_special_tokens)) return {};
  return decoded_bytes_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) bytes.append(token_bytes(id, skip_special_tokens));
  return utf8::sanitize(bytes);
}

int32_t Tokenizer::vocab_size() const {
  return vocab_size_;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& added : added_tokens_) {
    if (added.content == token) return added.id;
  }
  return model_->token_to_id(token);
}

std::string Tokenizer::display_text(const AddedToken& token) const {
  return token.normalized && nfc_ ? nfc(token.content) : token.content;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  for (const AddedToken& added : added_tokens_) {
    if (added.id == id) return display_text(added);
  }
  return std::string(model_->id_to_token(id));
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < id_kind_.size() && id_kind_[id] == kSpecial;
}

}  // namespace bm::engine
