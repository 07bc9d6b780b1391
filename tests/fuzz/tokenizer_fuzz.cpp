// libFuzzer target for the tokenizer: arbitrary bytes -> encode / decode / incremental decode.
// Checks, besides "no crash": ids are in range, decode gives valid UTF-8, streaming gives exactly decode(),
// and valid text round-trips (for the tokenizer without a normalizer).
//
// Tokenizers: the shared Qwen2.5 and R1-Distill-Llama ones when $BMSERVER_SHARED_MODELS (default
// ../shared/models next to the checkout) has them, else a tiny byte-level BPE written to a temp folder.
// Input: byte 0 picks tokenizer and flags, the rest is the text; the text's bytes read as int32 are also
// decoded as ids.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace {

namespace fs = std::filesystem;

struct Loaded {
  std::unique_ptr<bm::engine::Tokenizer> tokenizer;
  bool normalizes;
};
std::vector<Loaded>* g_tokenizers = nullptr;

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
    std::abort();
  }
}

void add(const fs::path& dir, bool normalizes) {
  auto tok = bm::engine::Tokenizer::load(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: skipping %s: %s\n", dir.c_str(), std::string(tok.status().message()).c_str());
    return;
  }
  g_tokenizers->push_back({*std::move(tok), normalizes});
}

// A byte-level BPE small enough to write here: the 256 byte tokens, a few merges, two added tokens.
fs::path write_tiny_tokenizer() {
  const fs::path dir = fs::temp_directory_path() / "bm_tokenizer_fuzz_tiny";
  fs::create_directories(dir);
  std::string vocab = "{";
  auto byte_token = [](int b) { return bm::engine::byte_level::bytes_to_token(std::string(1, static_cast<char>(b))); };
  auto json_string = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out + "\"";
  };
  for (int b = 0; b < 256; ++b) vocab += json_string(byte_token(b)) + ": " + std::to_string(b) + ", ";
  const std::string g = byte_token(' ');
  vocab += json_string(g + "t") + ": 256, " + json_string("he") + ": 257, " + json_string(g + "t" + "he") + ": 258}";
  std::ofstream(dir / "vocab.json") << vocab;
  std::ofstream(dir / "merges.txt") << "#version: 0.2\n" << g << " t\nh e\n" << g << "t he\n";
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"tokenizer_class": "Qwen2Tokenizer", "add_bos_token": true, "bos_token": "<s>",
            "added_tokens_decoder": {"259": {"content": "<s>", "special": true},
                                     "260": {"content": "<x>", "special": false, "lstrip": true, "rstrip": true}}})";
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tokenizers = new std::vector<Loaded>();
  const char* env = std::getenv("BMSERVER_SHARED_MODELS");
  const fs::path shared =
      env != nullptr && *env != '\0' ? fs::path(env) : fs::path(__FILE__).parent_path() / "../../../shared/models";
  if (fs::exists(shared / "Qwen/Qwen2.5-7B-Instruct/vocab.json")) add(shared / "Qwen/Qwen2.5-7B-Instruct", true);
  const fs::path llama_json = shared / "tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json";
  if (fs::exists(llama_json)) {
    const fs::path dir = fs::temp_directory_path() / "bm_tokenizer_fuzz_llama";
    std::error_code ec;
    fs::create_directories(dir, ec);
    fs::create_symlink(fs::absolute(llama_json), dir / "tokenizer.json", ec);
    add(dir, false);
  }
  add(write_tiny_tokenizer(), true);
  require(!g_tokenizers->empty(), "no tokenizer could be loaded");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t options = data[0];
  const Loaded& loaded = (*g_tokenizers)[options % g_tokenizers->size()];
  const bm::engine::Tokenizer& tok = *loaded.tokenizer;
  const bool add_special = (options & 0x10) != 0;
  const bool skip_special = (options & 0x20) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  const std::vector<int32_t> ids = tok.encode(text, add_special);
  for (int32_t id : ids) require(id >= 0 && !tok.id_to_token(id).empty(), "encode produced an unknown id");
  const std::string decoded = tok.decode(ids, skip_special);
  require(bm::engine::utf8::is_valid(decoded), "decode produced invalid UTF-8");

  bm::engine::IncrementalDetokenizer detok(tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) streamed += detok.push(id);
  streamed += detok.flush();
  require(streamed == decoded, "streamed text differs from decode()");

  if (!loaded.normalizes && !add_special && !skip_special && bm::engine::utf8::is_valid(text)) {
    require(decoded == text, "valid text did not round-trip");
  }

  // The same bytes as arbitrary ids (most out of range), decoded both ways.
  std::vector<int32_t> raw(text.size() / 4);
  if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * 4);
  for (int32_t& id : raw) id %= tok.vocab_size() + 16;
  const std::string raw_decoded = tok.decode(raw, skip_special);
  require(bm::engine::utf8::is_valid(raw_decoded), "decode of arbitrary ids produced invalid UTF-8");
  bm::engine::IncrementalDetokenizer raw_detok(tok, skip_special);
  std::string raw_streamed;
  for (int32_t id : raw) {
    const std::string piece = raw_detok.push(id);
    require(bm::engine::utf8::is_valid(piece), "a streamed piece is invalid UTF-8");
    raw_streamed += piece;
  }
  raw_streamed += raw_detok.flush();
  require(raw_streamed == raw_decoded, "streamed arbitrary ids differ from decode()");
  return 0;
}
