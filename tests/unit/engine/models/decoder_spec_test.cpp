// The weight byte counts behind the decode bandwidth ceiling (decoder_spec.h), on real configs from
// ../shared/models: the total must match the checkpoints' published sizes, and a decode step must not be charged
// for an untied input-embedding table it only looks rows up in.
#include "engine/models/decoder_spec.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/model/model_config.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

std::filesystem::path shared_models() {
  const char* dir = std::getenv("BMSERVER_SHARED_MODELS");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::path();
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The spec of a shared config, or a skip (with the path) where ../shared/models does not hold it.
#define SPEC_OR_SKIP(spec, relative)                                                                      \
  const std::filesystem::path config_path = shared_models() / (relative);                                 \
  if (!std::filesystem::exists(config_path)) GTEST_SKIP() << "no shared model config at " << config_path; \
  absl::StatusOr<ModelConfig> config = parse_model_config(read_text(config_path), config_path.string());  \
  ASSERT_TRUE(config.ok()) << config.status();                                                            \
  absl::StatusOr<DecoderSpec> spec = make_decoder_spec(*config, "cpu");                                   \
  ASSERT_TRUE(spec.ok()) << spec.status()

// Qwen2.5-7B-Instruct: 7,615,616,512 parameters (the model card), untied; the 152064 × 3584 input table is
// 1,089,994,752 bf16 bytes a decode step does not read (the separate lm_head of the same size it does).
TEST(DecoderWeightBytesTest, UntiedQwen7BLeavesTheInputTableOut) {
  SPEC_OR_SKIP(spec, "Qwen/Qwen2.5-7B-Instruct/config.json");
  const DecoderWeightBytes bytes = float_weight_bytes(*spec, 2);
  EXPECT_EQ(bytes.total, int64_t{7'615'616'512} * 2);
  EXPECT_EQ(bytes.total - bytes.read_per_decode_step, int64_t{152064} * 3584 * 2);
  EXPECT_EQ(bytes.read_per_decode_step, int64_t{14'141'238'272});
}

// The total agrees with the checkpoint's own safetensors index (bf16), so the per-tensor layout is right.
TEST(DecoderWeightBytesTest, TotalMatchesTheSafetensorsIndex) {
  SPEC_OR_SKIP(spec, "Qwen/Qwen2.5-14B-Instruct/config.json");
  const std::filesystem::path index = config_path.parent_path() / "model.safetensors.index.json";
  if (!std::filesystem::exists(index)) GTEST_SKIP() << "no " << index;
  const int64_t total_size = nlohmann::json::parse(read_text(index))["metadata"]["total_size"].get<int64_t>();
  const DecoderWeightBytes bytes = float_weight_bytes(*spec, 2);
  EXPECT_EQ(bytes.total, total_size);
  EXPECT_EQ(bytes.read_per_decode_step, total_size - int64_t{152064} * 5120 * 2);
}

// Tied (Qwen2.5-3B-Instruct, 3,085,938,688 parameters): the table is the lm_head, read whole every step.
TEST(DecoderWeightBytesTest, TiedTableIsReadWhole) {
  SPEC_OR_SKIP(spec, "Qwen/Qwen2.5-3B-Instruct/config.json");
  ASSERT_TRUE(spec->tie_word_embeddings);
  const DecoderWeightBytes bytes = float_weight_bytes(*spec, 2);
  EXPECT_EQ(bytes.total, int64_t{3'085'938'688} * 2);
  EXPECT_EQ(bytes.read_per_decode_step, bytes.total);
}

// Held bytes (quantized layers packed, alignment): the same rule on whatever the device holds.
TEST(DecoderWeightBytesTest, HeldBytesLessTheUntiedTable) {
  DecoderSpec spec;
  spec.tie_word_embeddings = false;
  EXPECT_EQ(decode_read_weight_bytes(spec, 5000, 1200), 3800);
  spec.tie_word_embeddings = true;
  EXPECT_EQ(decode_read_weight_bytes(spec, 5000, 1200), 5000);
}

}  // namespace
}  // namespace bm::engine
