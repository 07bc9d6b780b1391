#include "engine/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/tokenizer_test_util.h"

namespace bm::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::llama_tokenizer;
using testing::qwen_tokenizer;

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// llama.cpp's tokenizer vectors (generated from the Hugging Face tokenizers, add_special_tokens=false).
void check_llama_cpp_vectors(const Tokenizer& tok, const std::string& name) {
  const auto dir = testing::shared_models_dir() / "tokenizer-tests";
  const std::string inp = read_all(dir / (name + ".inp"));
  const std::string out = read_all(dir / (name + ".out"));
  std::vector<std::string> cases = absl::StrSplit(inp, "\n__ggml_vocab_test__\n");
  std::vector<std::string> expected = absl::StrSplit(out, '\n');
  ASSERT_GT(cases.size(), 40u);
  cases.pop_back();  // the file ends with a separator
  ASSERT_GE(expected.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<int32_t> want;
    for (absl::string_view field : absl::StrSplit(expected[i], ' ', absl::SkipEmpty())) {
      want.push_back(std::stoi(std::string(field)));
    }
    EXPECT_EQ(tok.encode(cases[i], false), want) << name << " case " << i << ": '" << cases[i] << "'";
    EXPECT_EQ(tok.decode(want, false), cases[i]) << name << " case " << i;
  }
}

TEST(TokenizerTest, ReproducesLlamaCppQwen2Vectors) {
  BM_REQUIRE_TOKENIZER(tok, qwen_tokenizer);
  check_llama_cpp_vectors(*tok, "ggml-vocab-qwen2.gguf");
}

TEST(TokenizerTest, ReproducesLlamaCppLlama3Vectors) {
  BM_REQUIRE_TOKENIZER(tok, llama_tokenizer);
  check_llama_cpp_vectors(*tok, "ggml-vocab-llama-bpe.gguf");
}

TEST(TokenizerTest, QwenAddsNoBosAndMatchesSpecialTokensInText) {
  BM_REQUIRE_TOKENIZER(tok, qwen_tokenizer);
  EXPECT_EQ(tok->bos_id(), std::nullopt);
  EXPECT_EQ(tok->eos_id(), 151645);
  EXPECT_EQ(tok->vocab_size(), 151665);
  EXPECT_EQ(tok->encode("hi", true), tok->encode("hi", false));
  const std::vector<int32_t> ids = tok->encode("<|im_start|>user\nhi<|im_end|>", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids.back(), 151645);
  EXPECT_TRUE(tok->is_special(151644));
  EXPECT_FALSE(tok->is_special(151657));  // <tool_call> is added but not special
  EXPECT_FALSE(tok->is_special(100));
  EXPECT_EQ(tok->decode(ids, true), "user\nhi");
  EXPECT_EQ(tok->decode(ids, false), "<|im_start|>user\nhi<|im_end|>");
  EXPECT_EQ(tok->decode(tok->encode("<tool_call>x", false), true), "<tool_call>x");
}

TEST(TokenizerTest, TokenLookups) {
  BM_REQUIRE_TOKENIZER(tok, qwen_tokenizer);
  EXPECT_EQ(tok->token_to_id("<|im_end|>"), 151645);
  EXPECT_EQ(tok->token_to_id("Ġhello"), 23811);
  EXPECT_EQ(tok->id_to_token(23811), "Ġhello");
  EXPECT_EQ(tok->id_to_token(151645), "<|im_end|>");
  EXPECT_EQ(tok->token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(tok->id_to_token(-5), "");
  EXPECT_EQ(tok->id_to_token(10'000'000), "");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{-1, 10'000'000, 23811}, false), " hello");
}

TEST(TokenizerTest, LlamaAddsBosWhenAskedAndIgnoresMerges) {
  BM_REQUIRE_TOKENIZER(tok, llama_tokenizer);
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_id(), 128001);
  EXPECT_EQ(tok->vocab_size(), 128256);
  const std::vector<int32_t> plain = tok->encode(" Việt", false);
  EXPECT_THAT(plain, ElementsAre(101798));  // one token only because of ignore_merges
  std::vector<int32_t> with_bos = tok->encode(" Việt", true);
  EXPECT_THAT(with_bos, ElementsAre(128000, 101798));
  EXPECT_EQ(tok->decode(with_bos, true), " Việt");
  EXPECT_EQ(tok->decode(with_bos, false), "<｜begin▁of▁sentence｜> Việt");
}

TEST(TokenizerTest, InvalidUtf8IsReplacedBeforeEncoding) {
  BM_REQUIRE_TOKENIZER(tok, qwen_tokenizer);
  // One U+FFFD per maximal invalid subpart: "\xE2\x82" is one, "\xFF" another.
  EXPECT_EQ(tok->encode("a\xE2\x82(\xFFz", false), tok->encode("a\xEF\xBF\xBD(\xEF\xBF\xBDz", false));
  EXPECT_EQ(tok->decode(tok->encode("x\xC0\xAFy", false), false), "x\xEF\xBF\xBD\xEF\xBF\xBDy");
}

TEST(TokenizerTest, DecodeReplacesBrokenUtf8) {
  BM_REQUIRE_TOKENIZER(tok, qwen_tokenizer);
  // "你" is e4 bd a0; its byte tokens alone do not form a character.
  const std::vector<int32_t> ids = tok->encode("你", false);
  ASSERT_EQ(ids.size(), 1u);
  const auto e4 = tok->token_to_id("ä");  // byte 0xE4
  ASSERT_TRUE(e4.has_value());
  EXPECT_EQ(tok->decode(std::vector<int32_t>{*e4}, false), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode(std::vector<int32_t>{*e4, 'a' - 'a' + 64}, false),
            "\xEF\xBF\xBD"
            "a");
}

TEST(TokenizerTest, MissingFilesAreNamed) {
  auto tok = Tokenizer::load("/nonexistent/model");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("/nonexistent/model"));
}

void write_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::filesystem::path scratch_dir(const std::string& name) {
  auto dir =
      testing::env_path("BMSERVER_BUILD_DIR", std::filesystem::temp_directory_path()) / "tokenizer_scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(TokenizerTest, UnsupportedModelTypeIsNamed) {
  const auto dir = scratch_dir("unigram");
  write_file(dir / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
  auto tok = Tokenizer::load(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("'Unigram'"));
}

TEST(TokenizerTest, UnsupportedTokenizerClassIsNamed) {
  const auto dir = scratch_dir("bert");
  write_file(dir / "vocab.json", R"({"a": 0})");
  write_file(dir / "merges.txt", "");
  write_file(dir / "tokenizer_config.json", R"({"tokenizer_class": "BertTokenizer"})");
  auto tok = Tokenizer::load(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("'BertTokenizer'"));
}

TEST(TokenizerTest, UnknownSplitRegexIsNamed) {
  const auto dir = scratch_dir("regex");
  write_file(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
    "decoder": {"type": "ByteLevel"}})");
  auto tok = Tokenizer::load(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("\\w+"));
}

TEST(TokenizerTest, CorruptJsonIsRejected) {
  const auto dir = scratch_dir("corrupt");
  write_file(dir / "tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merg)");
  auto tok = Tokenizer::load(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("not valid JSON"));
}

TEST(TokenizerTest, VocabWithoutByteTokensIsRejected) {
  const auto dir = scratch_dir("nobytes");
  write_file(dir / "vocab.json", R"({"a": 0, "b": 1})");
  write_file(dir / "merges.txt", "a b\n");
  write_file(dir / "tokenizer_config.json", R"({"tokenizer_class": "Qwen2Tokenizer"})");
  auto tok = Tokenizer::load(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr("no token for byte"));
}

}  // namespace
}  // namespace bm::engine
