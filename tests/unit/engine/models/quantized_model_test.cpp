// The quantized checkpoints of tests/data/models/ (made by tests/tools/model_make_quantized_checkpoints.py with
// gptqmodel's own GPTQ and AWQ packers) against the quantizer's own code:
// - unpack identity: the weights we read from the packed tensors, dequantized as W = (q - zero) * scale in F32,
//   equal bit for bit what the package's unpack (dequantize_weight / dequantize_gemm, scales widened to float32
//   first so the product is exact) gives for the same layer;
// - transformers running the quantized folder itself (from_pretrained → gptqmodel's CPU kernels): our logits
//   after each prompt within kKernelTolerance and the same greedy tokens. Those kernels compute in reduced
//   precision (the generator measured 4e-3 … 6e-3 between them and float32 on the dequantized weights, logits
//   ~±4), so the bound is 3e-2: five times that, while a wrong nibble order, group or zero-point moves logits by
//   0.1 or more. The tight comparison (1e-3, against float32 on the dequantized weights, greedy decode, batched
//   and chunked prefill, graphs) is decoder_lm_test.cpp's, where these models are instantiated too.
#include <gtest/gtest.h>

#include <bit>
#include <cstdlib>
#include <fstream>

#include "engine/backend/quantized_matrix.h"
#include "engine/model/checkpoint.h"
#include "engine/model/model_config.h"
#include "engine/models/model_loader.h"
#include "engine/models/quant_scheme.h"
#include "engine/models/quantized_layer.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

constexpr double kKernelTolerance = 3e-2;

std::filesystem::path model_dir(const std::string& model) {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models" / model;
}

nlohmann::json reference(const std::string& model) {
  std::ifstream in(model_dir(model) / "reference.json");
  return nlohmann::json::parse(in);
}

class QuantizedModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(QuantizedModelTest, UnpackEqualsTheQuantizersOwnBitForBit) {
  const nlohmann::json expected = reference(GetParam()).at("dequantized");
  const std::string layer = expected.at("layer").get<std::string>();
  const std::vector<int64_t> shape = expected.at("shape").get<std::vector<int64_t>>();  // [out, in]
  const std::vector<double> weights = expected.at("weights").get<std::vector<double>>();
  absl::StatusOr<ModelConfig> config = read_model_config(model_dir(GetParam()));
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<QuantScheme> scheme = make_quant_scheme(*config->quantization);
  ASSERT_TRUE(scheme.ok()) << scheme.status();
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(model_dir(GetParam()));
  ASSERT_TRUE(checkpoint.ok());
  absl::StatusOr<QuantizedLayerTensors> tensors =
      find_quantized_layer(**checkpoint, *scheme, layer, shape[0], shape[1]);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  absl::StatusOr<QuantizedLayerSource> source = convert_quantized_layer(*tensors, *scheme, /*with_weights=*/true);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ(source->shape.permuted, GetParam().find("-act") != std::string::npos);
  const std::vector<float> dense = dequantize(source->view());
  ASSERT_EQ(dense.size(), weights.size());
  int64_t mismatches = 0;
  for (size_t i = 0; i < dense.size(); ++i) {
    if (std::bit_cast<uint32_t>(dense[i]) != std::bit_cast<uint32_t>(static_cast<float>(weights[i]))) ++mismatches;
  }
  EXPECT_EQ(mismatches, 0) << "of " << dense.size() << " weights of " << layer;
}

TEST_P(QuantizedModelTest, LogitsAndGreedyTokensMatchTransformersOnTheQuantizedCheckpoint) {
  const nlohmann::json record = reference(GetParam());
  LoadOptions options;
  options.num_threads = 2;
  options.kv_cache_dtype = DType::kF32;  // the reference is float32 transformers (the BF16 default is not)
  options.cpu_gemm_path = "f32";         // nor are the default bf16 activations (decoder_lm_test holds those)
  absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(model_dir(GetParam()), options);
  ASSERT_TRUE(lm.ok()) << lm.status();
  ASSERT_TRUE((*lm)->allocate_kv_cache(64).ok());
  const int32_t vocab = (*lm)->info().vocab_size;
  double worst = 0;
  int32_t next_block = 0;
  for (size_t p = 0; p < record.at("prompts").size(); ++p) {
    const std::vector<int32_t> ids = record["prompts"][p].at("ids").get<std::vector<int32_t>>();
    const std::vector<float> expected = record["kernel"][p].at("prefill_logits").get<std::vector<float>>();
    const std::vector<int32_t> greedy = record["kernel"][p].at("greedy_ids").get<std::vector<int32_t>>();
    SCOPED_TRACE(testing::Message() << "prompt of " << ids.size() << " tokens");
    SequenceChunk chunk{0, static_cast<int32_t>(ids.size()), {}, true};
    for (int32_t b = 0; b < 4; ++b) chunk.block_table.push_back(next_block++);  // 64 tokens per prompt
    std::vector<float> logits;
    ASSERT_TRUE((*lm)->forward(ForwardBatch{ids, {chunk}}, logits).ok());
    ASSERT_EQ(static_cast<int32_t>(logits.size()), vocab);
    for (int32_t v = 0; v < vocab; ++v) worst = std::max(worst, std::abs(double{logits[v]} - expected[v]));
    for (size_t step = 0; step < greedy.size(); ++step) {
      const int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      ASSERT_EQ(token, greedy[step]) << "greedy step " << step;
      chunk.num_cached_tokens += chunk.num_new_tokens;
      chunk.num_new_tokens = 1;
      ASSERT_TRUE((*lm)->forward(ForwardBatch{{token}, {chunk}}, logits).ok());
    }
  }
  EXPECT_LT(worst, kKernelTolerance);
  std::cout << "[ max |logit - quantizer kernel| ] " << GetParam() << ": " << worst << " (the generator measured "
            << record.at("max_kernel_prefill_difference").get<double>() << " against float32)\n";
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizedModelTest,
                         ::testing::Values("qwen2-gptq-int4", "qwen2-gptq-int4-act", "qwen2-gptq-int8",
                                           "qwen2-gptq-int8-act", "qwen2-awq", "llama3-gptq-int4-act", "llama3-awq"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace bm::engine
