// Loading GPTQ and AWQ checkpoints: what runs, and the one sentence for every checkpoint or config we refuse
// (docs/quantization.md). The numbers these models compute are checked against transformers in
// quantized_model_test.cpp; here the checkpoints are random (random_checkpoint.h) and only loading is at stake.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <span>

#include "engine/model/model_config.h"
#include "engine/models/decoder_spec.h"
#include "engine/models/decoder_weights.h"
#include "engine/models/model_loader.h"
#include "engine/models/quant_scheme.h"
#include "tests/unit/engine/model/test_files.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace bm::engine {
namespace {

using ::testing::HasSubstr;
using testing::RandomCheckpointShape;
using testing::TempDir;

absl::StatusOr<std::unique_ptr<CausalLM>> load(const std::filesystem::path& dir) {
  LoadOptions options;
  options.num_threads = 2;
  return load_causal_lm(dir, options);
}

std::string load_error(const std::filesystem::path& dir) {
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load(dir);
  return lm.ok() ? std::string("(loaded)") : std::string(lm.status().message());
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

RandomCheckpointShape quantized(const std::string& scheme, bool desc_act = false) {
  RandomCheckpointShape shape;
  shape.quantization = scheme;
  shape.desc_act = desc_act;
  return shape;
}

TEST(QuantizedLoaderTest, LoadsEveryFormatAndRunsIt) {
  struct Case {
    std::string scheme;
    bool desc_act;
  };
  for (const Case& c : std::vector<Case>{
           {"gptq-int4", false}, {"gptq-int4", true}, {"gptq-int8", false}, {"gptq-int8", true}, {"awq-int4", false}}) {
    SCOPED_TRACE(c.scheme + (c.desc_act ? " desc_act" : ""));
    TempDir dir;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized(c.scheme, c.desc_act)));
    absl::StatusOr<std::unique_ptr<CausalLM>> lm = load(dir.path());
    ASSERT_TRUE(lm.ok()) << lm.status();
    EXPECT_EQ((*lm)->info().quantization, c.scheme);
    ASSERT_TRUE((*lm)->allocate_kv_cache(2).ok());
    std::vector<float> logits;
    ASSERT_TRUE((*lm)->forward(ForwardBatch{{1, 2, 3}, {SequenceChunk{0, 3, {1}, true}}}, logits).ok());
    ASSERT_EQ(logits.size(), 256u);
    for (float logit : logits) ASSERT_TRUE(std::isfinite(logit));
  }
}

// Memory planning sees the packed bytes: the weights of a 4-bit model take far less than its float twin's.
TEST(QuantizedLoaderTest, WeightBytesCountThePackedLayers) {
  TempDir float_dir, int4_dir, int8_dir;
  RandomCheckpointShape shape;
  shape.hidden_size = 128;  // head_dim 32: q and o 128 × 128, k and v 64 × 128
  shape.intermediate_size = 512;
  shape.vocab_size = 64;
  shape.group_size = 128;
  ASSERT_TRUE(testing::write_random_checkpoint(float_dir.path(), shape));
  shape.quantization = "gptq-int4";
  ASSERT_TRUE(testing::write_random_checkpoint(int4_dir.path(), shape));
  shape.quantization = "gptq-int8";
  ASSERT_TRUE(testing::write_random_checkpoint(int8_dir.path(), shape));
  absl::StatusOr<std::unique_ptr<CausalLM>> dense = load(float_dir.path());
  absl::StatusOr<std::unique_ptr<CausalLM>> int4 = load(int4_dir.path());
  absl::StatusOr<std::unique_ptr<CausalLM>> int8 = load(int8_dir.path());
  ASSERT_TRUE(dense.ok() && int4.ok() && int8.ok());
  const int64_t linear_weights = 2 * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 512);
  // The float tensors (embedding, norms, biases) are 2 bytes per value in both: F16 or BF16.
  const int64_t other = (*dense)->info().weight_bytes - 2 * linear_weights;
  EXPECT_GT(other, 0);
  const int64_t int4_linear = (*int4)->info().weight_bytes - other;
  const int64_t int8_linear = (*int8)->info().weight_bytes - other;
  // Packed weights plus, per 16 columns and group of 128, a 64-byte header (F16 scales, zero-points): 1/16 more
  // for int4, 1/32 for int8, and 256-byte alignment of 14 layers.
  EXPECT_GE(int4_linear, linear_weights / 2 * 17 / 16);
  EXPECT_LE(int4_linear, linear_weights / 2 * 17 / 16 + 14 * 256);
  EXPECT_GE(int8_linear, linear_weights * 33 / 32);
  EXPECT_LE(int8_linear, linear_weights * 33 / 32 + 14 * 256);
}

TEST(QuantizedLoaderTest, HonoursModulesToNotConvert) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("awq-int4")));
  // The checkpoint's linear layers are all packed; naming one as unconverted makes the loader look for .weight.
  replace_in_config(dir.path(), R"("zero_point": true)",
                    R"("zero_point": true, "modules_to_not_convert": ["down_proj"])");
  EXPECT_THAT(load_error(dir.path()), HasSubstr("no tensor 'model.layers.0.mlp.down_proj.weight'"));
}

TEST(QuantizedLoaderTest, NamesTheTensorOfABadCheckpoint) {
  {
    SCOPED_TRACE("desc_act without g_idx");
    TempDir dir;
    RandomCheckpointShape shape = quantized("gptq-int4", true);
    shape.write_g_idx = false;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
    EXPECT_EQ(load_error(dir.path()),
              "the checkpoint has no tensor 'model.layers.0.self_attn.q_proj.g_idx' (config.json quantizes this layer, "
              "and desc_act: true needs g_idx)");
  }
  {
    SCOPED_TRACE("packed tensor of the wrong shape");
    TempDir dir;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("gptq-int4")));
    replace_in_config(dir.path(), R"("intermediate_size": 128)", R"("intermediate_size": 96)");
    EXPECT_EQ(load_error(dir.path()),
              "tensor 'model.layers.0.mlp.gate_proj.qweight' has shape [8, 128] but config.json implies [8, 96]");
  }
  {
    SCOPED_TRACE("AWQ packed tensor of the wrong shape");
    TempDir dir;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("awq-int4")));
    replace_in_config(dir.path(), R"("intermediate_size": 128)", R"("intermediate_size": 96)");
    EXPECT_EQ(load_error(dir.path()),
              "tensor 'model.layers.0.mlp.gate_proj.qweight' has shape [64, 16] but config.json implies [64, 12]");
  }
  {
    SCOPED_TRACE("scales of the wrong dtype");
    TempDir dir;
    RandomCheckpointShape shape = quantized("awq-int4");
    shape.scales_dtype = DType::kBF16;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
    EXPECT_EQ(load_error(dir.path()),
              "tensor 'model.layers.0.self_attn.q_proj.scales' has dtype BF16 but a quantized layer's scales must be "
              "F16");
  }
  {
    SCOPED_TRACE("group size that does not divide the input");
    TempDir dir;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("gptq-int4")));
    replace_in_config(dir.path(), R"("group_size": 32)", R"("group_size": 48)");
    EXPECT_EQ(load_error(dir.path()),
              "layer 'model.layers.0.self_attn.q_proj': group_size 48 does not divide its input size 64");
  }
  {
    SCOPED_TRACE("zero-points out of range for sym");
    TempDir dir;
    RandomCheckpointShape shape = quantized("gptq-int4");
    shape.gptq_zero_word = 0x77777737u;  // field 1 stores 3: zero-point 4 at output 1
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
    EXPECT_EQ(load_error(dir.path()),
              "tensor 'model.layers.0.self_attn.q_proj.qzeros' holds zero-point 4 (group 0, output 1) but config.json "
              "says sym: true, which needs 8 everywhere");
  }
  {
    SCOPED_TRACE("g_idx naming a group that does not exist");
    TempDir dir;
    RandomCheckpointShape shape = quantized("gptq-int8");
    shape.g_idx_shift = 1;  // inputs 32..63 name group 2 of two
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), shape));
    EXPECT_EQ(load_error(dir.path()),
              "tensor 'model.layers.0.self_attn.q_proj.g_idx' names group 2 at input 32 but the layer has 2 groups");
  }
}

// Formats we do not run are one sentence at load, before any tensor is read.
TEST(QuantizedLoaderTest, NamesAnUnsupportedFormat) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("bits": 4)", "quantization_config: GPTQ with 3 bits is not supported (4 and 8 are)"},
      {R"("quant_method": "gptq")", "quantization_config: quant_method 'exl2' is not supported (gptq and awq are)"},
      {R"("sym": true)",
       "quantization_config: GPTQ serialized in the Marlin layout is not supported; use the plain "
       "GPTQ checkpoint"},
      {R"("desc_act": false)",
       "quantization_config: GPTQ checkpoint_format 'gptq_v3' is not supported (gptq and "
       "gptq_v2 are)"},
      {R"("group_size": 32)", "quantization_config: group_size 0 is not a positive size (or -1)"},
  };
  const std::vector<std::string> replacements = {
      R"("bits": 3)", R"("quant_method": "exl2")", R"("sym": true, "checkpoint_format": "marlin")",
      R"("desc_act": false, "checkpoint_format": "gptq_v3")", R"("group_size": 0)"};
  for (size_t i = 0; i < cases.size(); ++i) {
    TempDir dir;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("gptq-int4")));
    replace_in_config(dir.path(), cases[i].first, replacements[i]);
    EXPECT_EQ(load_error(dir.path()), cases[i].second);
  }
  const std::vector<std::pair<std::string, std::string>> awq_cases = {
      {R"("version": "gemv")", "quantization_config: AWQ version 'gemv' is not supported (gemm is)"},
      {R"("zero_point": false)", "quantization_config: AWQ without zero-points (zero_point: false) is not supported"},
      {R"("bits": 2)", "quantization_config: AWQ with 2 bits is not supported (4 is)"},
  };
  const std::vector<std::string> awq_originals = {R"("version": "gemm")", R"("zero_point": true)", R"("bits": 4)"};
  for (size_t i = 0; i < awq_cases.size(); ++i) {
    TempDir dir;
    ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("awq-int4")));
    replace_in_config(dir.path(), awq_originals[i], awq_cases[i].first);
    EXPECT_EQ(load_error(dir.path()), awq_cases[i].second);
  }
}

// The cpu and cuda backends run quantized layers (the cuda kernels: tests/cuda_emulation/quantized_test.cpp);
// any other backend is refused with one sentence before anything is read.
TEST(QuantizedLoaderTest, BackendsWithoutQuantizedKernelsRefuseWithASentence) {
  TempDir dir;
  ASSERT_TRUE(testing::write_random_checkpoint(dir.path(), quantized("gptq-int4")));
  absl::StatusOr<ModelConfig> config = read_model_config(dir.path());
  ASSERT_TRUE(config.ok());
  EXPECT_TRUE(make_decoder_spec(*config, "cpu").ok());
  EXPECT_TRUE(make_decoder_spec(*config, "cuda").ok());
  EXPECT_EQ(make_decoder_spec(*config, "metal").status().message(),
            "quantization gptq (gptq-int4) is not supported yet by the metal backend; it runs on the cpu backend");
}

// Backends other than the cpu one receive the F16 float tensors of GPTQ/AWQ checkpoints as BF16: every one of the
// 65536 F16 values rounds to the nearest even BF16 of its exact value (NaN stays NaN).
TEST(QuantizedLoaderTest, F16TensorsBecomeBf16RoundedToNearestEven) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  const std::vector<uint16_t> bf16 = f16_to_bf16(std::as_bytes(std::span(all)));
  ASSERT_EQ(bf16.size(), all.size());
  int wrong = 0;
  for (uint32_t i = 0; i < all.size(); ++i) {
    const double exact = f16_to_f32(all[i]);
    const float got = std::bit_cast<float>(uint32_t{bf16[i]} << 16);
    if (std::isnan(exact)) {
      wrong += !std::isnan(got);
      continue;
    }
    // Nearest: no BF16 neighbour is closer; even: on a tie the last mantissa bit is 0.
    const float up = std::bit_cast<float>((uint32_t{bf16[i]} + 1) << 16);
    const float down = std::bit_cast<float>((uint32_t{bf16[i]} - 1) << 16);
    // A neighbour past ±0 or ±inf is no BF16 number (NaN bits): infinitely far.
    const auto distance = [exact](float v) { return std::isnan(v) ? INFINITY : std::fabs(v - exact); };
    const double error = std::fabs(got - exact);
    const bool nearest = std::isinf(exact) ? got == exact : error <= distance(up) && error <= distance(down);
    const bool tie = !std::isinf(exact) && (error == distance(up) || error == distance(down));
    wrong += !nearest || (tie && error != 0 && (bf16[i] & 1) != 0);
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(bf16[0x3c00], 0x3f80);  // 1.0
  EXPECT_EQ(bf16[0x3c01], 0x3f80);  // 1 + 2^-10 rounds down to 1.0
  EXPECT_EQ(bf16[0x7bff], 0x4780);  // 65504 rounds up to 65536
}

TEST(QuantSchemeTest, ReadsThePublishedConfigs) {
  const char* shared = std::getenv("BMSERVER_SHARED_MODELS");
  if (shared == nullptr) GTEST_SKIP() << "no shared models";
  const std::filesystem::path models(shared);
  absl::StatusOr<ModelConfig> gptq = read_model_config(models / "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4");
  absl::StatusOr<ModelConfig> awq = read_model_config(models / "Qwen/Qwen2.5-14B-Instruct-AWQ");
  ASSERT_TRUE(gptq.ok() && awq.ok());
  absl::StatusOr<QuantScheme> gptq_scheme = make_quant_scheme(*gptq->quantization);
  absl::StatusOr<QuantScheme> awq_scheme = make_quant_scheme(*awq->quantization);
  ASSERT_TRUE(gptq_scheme.ok() && awq_scheme.ok());
  EXPECT_EQ(quant_scheme_name(*gptq_scheme), "gptq-int4");
  EXPECT_EQ(gptq_scheme->zero_offset, 1);  // no checkpoint_format: AutoGPTQ's v1
  EXPECT_TRUE(gptq_scheme->sym);
  EXPECT_EQ(gptq_scheme->group_size, 128);
  EXPECT_EQ(quant_scheme_name(*awq_scheme), "awq-int4");
  EXPECT_EQ(awq_scheme->zero_offset, 0);
}

TEST(QuantSchemeTest, ModulesToNotConvertMatchLikeTransformers) {
  QuantScheme scheme;
  scheme.modules_to_not_convert = {"visual", "lm_head"};
  EXPECT_FALSE(is_quantized_module(scheme, "visual.blocks.0.attn.qkv"));
  EXPECT_FALSE(is_quantized_module(scheme, "lm_head"));
  EXPECT_TRUE(is_quantized_module(scheme, "model.layers.0.mlp.down_proj"));
}

}  // namespace
}  // namespace bm::engine
