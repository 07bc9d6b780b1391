#include "engine/model/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>

namespace bm::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::filesystem::path shared_models() {
  const char* dir = std::getenv("BMSERVER_SHARED_MODELS");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::path();
}

absl::StatusOr<ModelConfig> parse_shared(const std::string& relative) {
  const auto path = shared_models() / relative;
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(path.string());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_model_config(text, path.string());
}

struct Expected {
  std::string architecture;
  int32_t hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, max_positions;
  bool tied;
  double theta, eps;
  std::string rope_type;
  std::string quantization;
};

// Every config.json-like file in shared/models, with the facts models.md lists for it.
const std::map<std::string, Expected>& expected_configs() {
  static const std::map<std::string, Expected> configs = {
      {"Qwen/Qwen2.5-3B-Instruct/config.json",
       {"Qwen2ForCausalLM", 2048, 36, 16, 2, 128, 11008, 151936, 32768, true, 1e6, 1e-6, "default", ""}},
      {"Qwen/Qwen2.5-7B-Instruct/config.json",
       {"Qwen2ForCausalLM", 3584, 28, 28, 4, 128, 18944, 152064, 32768, false, 1e6, 1e-6, "default", ""}},
      {"Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4/config.json",
       {"Qwen2ForCausalLM", 3584, 28, 28, 4, 128, 18944, 152064, 32768, false, 1e6, 1e-6, "default", "gptq"}},
      {"Qwen/Qwen2.5-14B-Instruct/config.json",
       {"Qwen2ForCausalLM", 5120, 48, 40, 8, 128, 13824, 152064, 32768, false, 1e6, 1e-6, "default", ""}},
      {"Qwen/Qwen2.5-14B-Instruct-AWQ/config.json",
       {"Qwen2ForCausalLM", 5120, 48, 40, 8, 128, 13824, 152064, 32768, false, 1e6, 1e-6, "default", "awq"}},
      {"Qwen/QwQ-32B/config.json",
       {"Qwen2ForCausalLM", 5120, 64, 40, 8, 128, 27648, 152064, 131072, false, 1e6, 1e-5, "default", ""}},
      {"Qwen/Qwen2.5-VL-3B-Instruct/config.json",
       {"Qwen2_5_VLForConditionalGeneration", 2048, 36, 16, 2, 128, 11008, 151936, 8192, true, 1e6, 1e-6, "mrope", ""}},
      {"Qwen/Qwen2.5-VL-7B-Instruct/config.json",
       {"Qwen2_5_VLForConditionalGeneration", 3584, 28, 28, 4, 128, 18944, 152064, 128000, false, 1e6, 1e-6, "mrope",
        ""}},
      {"deepseek-ai/DeepSeek-R1-Distill-Llama-8B/config.resaved-fp32.json",
       {"LlamaForCausalLM", 4096, 32, 32, 8, 128, 14336, 128256, 131072, false, 5e5, 1e-5, "llama3", ""}},
      {"deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B/config.modified-copy.json",
       {"Qwen2ForCausalLM", 1536, 28, 12, 2, 128, 8960, 151936, 131072, false, 1e4, 1e-6, "default", ""}},
  };
  return configs;
}

TEST(ModelConfigTest, ParsesEveryConfigOfTheSharedModels) {
  if (!std::filesystem::exists(shared_models() / "Qwen")) GTEST_SKIP() << "no shared models at " << shared_models();
  // Every config file in the folder must be in the table, so a new one is not silently skipped.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(shared_models())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("config", 0) != 0 || entry.path().extension() != ".json" || name == "configuration.json") continue;
    const std::string relative = std::filesystem::relative(entry.path(), shared_models()).string();
    EXPECT_TRUE(expected_configs().contains(relative)) << "no expectations for " << relative;
  }
  for (const auto& [relative, expected] : expected_configs()) {
    SCOPED_TRACE(relative);
    absl::StatusOr<ModelConfig> config = parse_shared(relative);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->architecture, expected.architecture);
    EXPECT_EQ(config->hidden_size, expected.hidden);
    EXPECT_EQ(config->num_layers, expected.layers);
    EXPECT_EQ(config->num_heads, expected.heads);
    EXPECT_EQ(config->num_kv_heads, expected.kv_heads);
    EXPECT_EQ(config->head_dim, expected.head_dim);
    EXPECT_EQ(config->intermediate_size, expected.intermediate);
    EXPECT_EQ(config->vocab_size, expected.vocab);
    EXPECT_EQ(config->max_position_embeddings, expected.max_positions);
    EXPECT_EQ(config->tie_word_embeddings, expected.tied);
    EXPECT_DOUBLE_EQ(config->rope.theta, expected.theta);
    EXPECT_DOUBLE_EQ(config->rms_norm_eps, expected.eps);
    EXPECT_EQ(config->rope.type, expected.rope_type);
    EXPECT_EQ(config->hidden_act, "silu");
    EXPECT_FALSE(config->use_sliding_window);
    EXPECT_EQ(config->quantization ? config->quantization->method : "", expected.quantization);
  }
}

TEST(ModelConfigTest, ReadsLlama3RopeScaling) {
  absl::StatusOr<ModelConfig> config =
      parse_shared("deepseek-ai/DeepSeek-R1-Distill-Llama-8B/config.resaved-fp32.json");
  if (absl::IsNotFound(config.status())) GTEST_SKIP() << "no shared models";
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_DOUBLE_EQ(config->rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(config->rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config->rope.high_freq_factor, 4.0);
  EXPECT_EQ(config->rope.original_max_position_embeddings, 8192);
  EXPECT_FALSE(config->attention_bias);
  EXPECT_FALSE(config->mlp_bias);
  EXPECT_EQ(config->dtype, "float32");
  EXPECT_EQ(config->bos_token_id, 128000);
  EXPECT_THAT(config->eos_token_ids, ElementsAre(128001));
}

TEST(ModelConfigTest, ReadsQuantizationConfigs) {
  absl::StatusOr<ModelConfig> awq = parse_shared("Qwen/Qwen2.5-14B-Instruct-AWQ/config.json");
  absl::StatusOr<ModelConfig> gptq = parse_shared("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4/config.json");
  if (absl::IsNotFound(awq.status()) || absl::IsNotFound(gptq.status())) GTEST_SKIP() << "no shared models";
  ASSERT_TRUE(awq.ok() && gptq.ok());
  EXPECT_EQ(awq->quantization->bits, 4);
  EXPECT_EQ(awq->quantization->group_size, 128);
  EXPECT_TRUE(awq->quantization->zero_point);
  EXPECT_EQ(awq->quantization->version, "gemm");
  EXPECT_EQ(gptq->quantization->bits, 4);
  EXPECT_FALSE(gptq->quantization->desc_act);
  EXPECT_TRUE(gptq->quantization->sym);
  EXPECT_EQ(gptq->dtype, "float16");
}

TEST(ModelConfigTest, ReadsMropeSections) {
  absl::StatusOr<ModelConfig> config = parse_shared("Qwen/Qwen2.5-VL-7B-Instruct/config.json");
  if (absl::IsNotFound(config.status())) GTEST_SKIP() << "no shared models";
  ASSERT_TRUE(config.ok());
  EXPECT_THAT(config->rope.mrope_section, ElementsAre(16, 24, 24));
}

// transformers 5 writes rope_parameters (with rope_theta inside) and dtype instead of torch_dtype.
TEST(ModelConfigTest, ReadsTheTransformers5Layout) {
  absl::StatusOr<ModelConfig> config = parse_model_config(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "dtype": "bfloat16",
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 512, "max_position_embeddings": 2048,
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 1024},
    "sliding_window": null, "tie_word_embeddings": true})",
                                                          "t5.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->dtype, "bfloat16");
  EXPECT_EQ(config->head_dim, 32);  // explicit, not hidden / heads
  EXPECT_EQ(config->rope.type, "llama3");
  EXPECT_DOUBLE_EQ(config->rope.theta, 500000.0);
  EXPECT_EQ(config->rope.original_max_position_embeddings, 1024);
  EXPECT_TRUE(config->tie_word_embeddings);
  EXPECT_EQ(config->num_kv_heads, 2);
}

TEST(ModelConfigTest, ReadsANestedTextConfig) {
  absl::StatusOr<ModelConfig> config = parse_model_config(R"({
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 128000,
                    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "rope_theta": 1000000.0,
                    "bos_token_id": 1, "eos_token_id": 2}})",
                                                          "vl.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->hidden_size, 64);
  // transformers 5 saves the special ids of a multimodal model in text_config only.
  EXPECT_EQ(config->bos_token_id, 1);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_EQ(config->rope.type, "mrope");
  EXPECT_DOUBLE_EQ(config->rope.theta, 1e6);
}

TEST(ModelConfigTest, RejectsBadConfigsWithTheFieldName) {
  const std::string base = R"("architectures": ["Qwen2ForCausalLM"], "intermediate_size": 128,
    "num_hidden_layers": 2, "vocab_size": 512, "max_position_embeddings": 64)";
  auto error = [&](const std::string& extra) {
    return std::string(parse_model_config("{" + base + "," + extra + "}", "c.json").status().message());
  };
  EXPECT_THAT(error(R"("hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3)"),
              HasSubstr("not a multiple of num_key_value_heads"));
  EXPECT_THAT(error(R"("hidden_size": 64, "num_attention_heads": 5)"), HasSubstr("hidden_size 64"));
  EXPECT_THAT(error(R"("hidden_size": "64", "num_attention_heads": 4)"), HasSubstr("'hidden_size'"));
  EXPECT_THAT(error(R"("hidden_size": -64, "num_attention_heads": 4)"), HasSubstr("'hidden_size'"));
  EXPECT_THAT(error(R"("num_attention_heads": 4)"), HasSubstr("'hidden_size'"));
  EXPECT_THAT(error(R"("hidden_size": 64, "num_attention_heads": 4, "rope_theta": -1)"), HasSubstr("rope_theta"));
  EXPECT_THAT(error(R"("hidden_size": 64, "num_attention_heads": 4, "quantization_config": {"bits": 4})"),
              HasSubstr("quant_method"));
  EXPECT_THAT(std::string(parse_model_config("{}", "c.json").status().message()), HasSubstr("architectures"));
  EXPECT_THAT(std::string(parse_model_config("nope", "c.json").status().message()), HasSubstr("c.json"));
  EXPECT_TRUE(absl::IsNotFound(read_model_config("/nonexistent-model-dir").status()));
}

}  // namespace
}  // namespace bm::engine
