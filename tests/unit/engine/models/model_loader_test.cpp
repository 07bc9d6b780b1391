#include "engine/models/model_loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/model/model_config.h"
#include "engine/models/decoder_spec.h"
#include "tests/unit/engine/model/test_files.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace bm::engine {
namespace {

using ::testing::HasSubstr;
using testing::RandomCheckpointShape;
using testing::TempDir;

std::string load_error(const std::filesystem::path& dir) {
  LoadOptions options;
  options.num_threads = 1;
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(dir, options);
  return lm.ok() ? std::string() : std::string(lm.status().message());
}

void replace_in_config(const std::filesystem::path& dir, const std::string& from, const std::string& to) {
  std::ifstream in(dir / "config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const size_t at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  testing::write_file(dir / "config.json", text);
}

TEST(ModelLoaderTest, LoadsARandomCheckpointAndRunsIt) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), RandomCheckpointShape{}));
  LoadOptions options;
  options.num_threads = 2;
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(dir.path(), options);
  ASSERT_TRUE(lm.ok()) << lm.status();
  ASSERT_TRUE((*lm)->allocate_kv_cache(2).ok());
  std::vector<float> logits;
  ASSERT_TRUE((*lm)->forward(ForwardBatch{{1, 2, 3}, {SequenceChunk{0, 3, {1}, true}}}, logits).ok());
  EXPECT_EQ(logits.size(), 256u);
  for (float logit : logits) ASSERT_TRUE(std::isfinite(logit));
}

TEST(ModelLoaderTest, NamesAnUnsupportedArchitecture) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), RandomCheckpointShape{}));
  replace_in_config(dir.path(), "Qwen2ForCausalLM", "MistralForCausalLM");
  EXPECT_THAT(load_error(dir.path()), HasSubstr("architecture MistralForCausalLM is not supported"));
}

TEST(ModelLoaderTest, NamesATensorWhoseShapeDisagreesWithTheConfig) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), RandomCheckpointShape{}));
  replace_in_config(dir.path(), R"("intermediate_size": 128)", R"("intermediate_size": 96)");
  const std::string error = load_error(dir.path());
  EXPECT_THAT(error, HasSubstr("'model.layers.0.mlp.gate_proj.weight'"));
  EXPECT_THAT(error, HasSubstr("[128, 64]"));
  EXPECT_THAT(error, HasSubstr("[96, 64]"));
}

TEST(ModelLoaderTest, NamesAMissingTensor) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), RandomCheckpointShape{}));
  replace_in_config(dir.path(), R"("tie_word_embeddings": true)", R"("tie_word_embeddings": false)");
  EXPECT_THAT(load_error(dir.path()), HasSubstr("no tensor 'lm_head.weight'"));
}

TEST(ModelLoaderTest, NamesAnUnsupportedWeightDtype) {
  TempDir dir;
  RandomCheckpointShape shape;
  shape.dtype = DType::kI16;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
  const std::string error = load_error(dir.path());
  EXPECT_THAT(error, HasSubstr("dtype I16"));
  EXPECT_THAT(error, HasSubstr("model.embed_tokens.weight"));
}

TEST(ModelLoaderTest, NamesATruncatedWeightFile) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), RandomCheckpointShape{}));
  const auto weights = dir.path() / "model.safetensors";
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) - 100);
  const std::string error = load_error(dir.path());
  EXPECT_THAT(error, HasSubstr("model.safetensors"));
  EXPECT_THAT(error, HasSubstr("truncated"));
}

TEST(ModelLoaderTest, NamesMissingFilesAndUnknownBackends) {
  TempDir dir;
  EXPECT_THAT(load_error(dir.path()), HasSubstr("config.json"));
  testing::write_file(dir.path() / "config.json", testing::random_checkpoint_config(RandomCheckpointShape{}));
  EXPECT_THAT(load_error(dir.path()), HasSubstr("model.safetensors"));
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), RandomCheckpointShape{}));
  LoadOptions options;
  options.backend = "tpu";
  EXPECT_THAT(std::string(load_causal_lm(dir.path(), options).status().message()), HasSubstr("backend 'tpu'"));
  options.backend = "cpu";
  options.kv_cache_dtype = DType::kI8;
  EXPECT_THAT(std::string(load_causal_lm(dir.path(), options).status().message()), HasSubstr("KV cache dtype I8"));
  options.kv_cache_dtype.reset();
  options.cpu_gemm_path = "amx";
  EXPECT_EQ(load_causal_lm(dir.path(), options).status().message(),
            "unknown CPU GEMM path 'amx' (auto, f32, avx512-bf16, avx512, avx2 or scalar)");
  options.cpu_gemm_path = "scalar";
  EXPECT_TRUE(load_causal_lm(dir.path(), options).ok());
  options.num_threads = cpu::available_cpus() + 1;
  EXPECT_EQ(load_causal_lm(dir.path(), options).status().message(),
            absl::StrCat("the CPU backend cannot run ", options.num_threads, " threads: this process may use ",
                         options.num_threads - 1, " CPUs (its affinity mask); give 1 to ", options.num_threads - 1,
                         ", or 0 for all"));
}

std::filesystem::path shared_models() {
  const char* dir = std::getenv("BMSERVER_SHARED_MODELS");
  return dir != nullptr ? std::filesystem::path(dir) : std::filesystem::path();
}

// Every real config either makes a decoder spec or says exactly what is not supported.
TEST(DecoderSpecTest, AcceptsTheTextModelsAndNamesWhatItCannotRun) {
  if (!std::filesystem::exists(shared_models() / "Qwen")) GTEST_SKIP() << "no shared models at " << shared_models();
  const std::map<std::string, std::string> expected_errors = {};
  int checked = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(shared_models())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("config", 0) != 0 || entry.path().extension() != ".json" || name == "configuration.json") continue;
    const std::string relative = std::filesystem::relative(entry.path(), shared_models()).string();
    SCOPED_TRACE(relative);
    std::ifstream in(entry.path());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    absl::StatusOr<ModelConfig> config = parse_model_config(text, relative);
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<DecoderSpec> spec = make_decoder_spec(*config, "cpu");
    const auto expected = expected_errors.find(relative);
    if (expected == expected_errors.end()) {
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_EQ(static_cast<int32_t>(spec->rope_inv_freq.size()), config->head_dim / 2);
      EXPECT_EQ(spec->qkv_bias, config->architecture != "LlamaForCausalLM");
      // Qwen2.5-VL (rope type "mrope"): the default frequencies, and its M-RoPE sections kept for image prompts.
      if (config->architecture == "Qwen2_5_VLForConditionalGeneration") {
        EXPECT_EQ(spec->mrope_section, (std::vector<int32_t>{16, 24, 24}));
      } else {
        EXPECT_TRUE(spec->mrope_section.empty());
      }
    } else {
      EXPECT_THAT(std::string(spec.status().message()), HasSubstr(expected->second));
    }
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(DecoderSpecTest, Llama3ScalingKeepsHighFrequenciesAndDividesLowOnes) {
  const auto path = shared_models() / "deepseek-ai/DeepSeek-R1-Distill-Llama-8B/config.resaved-fp32.json";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no shared models at " << path;
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<ModelConfig> config = parse_model_config(text, path.string());
  ASSERT_TRUE(config.ok());
  absl::StatusOr<DecoderSpec> spec = make_decoder_spec(*config, "cpu");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::vector<float>& inv_freq = spec->rope_inv_freq;
  ASSERT_EQ(inv_freq.size(), 64u);
  // Wavelength 2π/f: below 8192/4 untouched, above 8192/1 divided by 8, smoothly blended between.
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double original = std::pow(500000.0, -2.0 * static_cast<double>(i) / 128.0);
    const double wavelength = 2 * M_PI / original;
    if (wavelength < 2048) {
      EXPECT_NEAR(inv_freq[i] / original, 1.0, 1e-6) << i;
    } else if (wavelength > 8192) {
      EXPECT_NEAR(inv_freq[i] / original, 1.0 / 8, 1e-6) << i;
    }
    if (i > 0) {
      EXPECT_LT(inv_freq[i], inv_freq[i - 1]) << i;
    }
  }
  config->rope.type = "yarn";
  EXPECT_EQ(make_decoder_spec(*config, "cpu").status().message(), "rope type 'yarn' is not supported yet");
}

}  // namespace
}  // namespace bm::engine
