// The Qwen2.5-VL vision tower against transformers: tests/tools/vision_make_encoder_fixtures.py built a small
// random-weight Qwen2_5_VisionTransformerPretrainedModel (depth 4, full attention on blocks 1 and 3, hidden 64, 2
// heads of 32, F32 weights) and recorded, for four inputs, the patch embedding, block 0's output and the merged
// embeddings it computes in float32 (tests/data/models/qwen2_5_vl_vision/).
//
// Tolerance: both sides compute in float32 from the same F32 weights and bf16-exact pixels, so they differ only
// by rounding order (dot products of 64..1176 terms, softmax over up to 240 rows, cos/sin of the same float32
// angles through different libm's, erf). Measured, the largest difference is 1.6e-6 of the largest output
// magnitude (docs/vision.md has each case); the bound kRelativeTolerance = 2e-5 of max |reference| per tensor
// leaves >10x room for another libm or summation order, while a real bug moves outputs far more (attending over
// whole frames instead of windows: 37-49 % of their magnitude).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/model/checkpoint.h"
#include "engine/model/safetensors_file.h"
#include "engine/model/safetensors_writer.h"
#include "engine/models/vision_encoder.h"
#include "tests/unit/engine/backend/forwarding_backend.h"
#include "tests/unit/engine/model/tensor_floats.h"

namespace bm::engine {
namespace {

constexpr double kRelativeTolerance = 2e-5;
constexpr int kNumCases = 4;

std::filesystem::path fixture_dir() {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models/qwen2_5_vl_vision";
}

using testing::tensor_floats;

std::vector<VisionGrid> read_grids(const TensorInfo& info) {
  EXPECT_EQ(info.dtype, DType::kI32);
  std::vector<int32_t> values(static_cast<size_t>(info.num_elements()));
  std::memcpy(values.data(), info.data.data(), info.data.size());
  std::vector<VisionGrid> grids;
  for (size_t i = 0; i + 2 < values.size(); i += 3)
    grids.push_back(VisionGrid{values[i], values[i + 1], values[i + 2]});
  return grids;
}

struct Difference {
  double max_abs = 0;
  double max_ref = 0;
  double relative() const { return max_ref > 0 ? max_abs / max_ref : max_abs; }
};

Difference compare(const std::vector<float>& got, const std::vector<float>& want) {
  Difference diff;
  EXPECT_EQ(got.size(), want.size());
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    diff.max_abs = std::max(diff.max_abs, std::abs(double{got[i]} - double{want[i]}));
    diff.max_ref = std::max(diff.max_ref, std::abs(double{want[i]}));
  }
  return diff;
}

class VisionEncoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The reference numerics (F32 activations): the transformers fixtures are compared at kRelativeTolerance.
    backend_ = create_cpu_backend(CpuBackendOptions{.gemm_path = cpu::best_f32_gemm_path()});
    auto config = load_vision_config(fixture_dir());
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    auto checkpoint = Checkpoint::open(fixture_dir());
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    checkpoint_ = std::move(*checkpoint);
    auto cases = SafetensorsFile::open(fixture_dir() / "cases.safetensors");
    ASSERT_TRUE(cases.ok()) << cases.status();
    cases_ = std::move(*cases);
  }

  const TensorInfo& tensor(const std::string& name) {
    const TensorInfo* info = cases_->find(name);
    BM_CHECK(info != nullptr);
    return *info;
  }

  std::unique_ptr<Backend> backend_;
  VisionConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<SafetensorsFile> cases_;
};

TEST_F(VisionEncoderTest, ConfigIsTheShrunkRealOne) {
  EXPECT_EQ(config_.depth, 4);
  EXPECT_EQ(config_.hidden_size, 64);
  EXPECT_EQ(config_.head_dim(), 32);
  EXPECT_EQ(config_.patch_dim(), 3 * 2 * 14 * 14);
  EXPECT_EQ(config_.window_size, 112);
  EXPECT_EQ(config_.fullatt_block_indexes, (std::vector<int32_t>{1, 3}));
}

// The list tools write random towers from is exactly what a real checkpoint holds (the fixture, saved by
// transformers, and the real configs' names and shapes).
TEST_F(VisionEncoderTest, TheTensorListIsTheCheckpoints) {
  std::vector<std::string> listed, held;
  for (const VisionTensorShape& t : vision_checkpoint_tensors(config_)) {
    listed.push_back(t.name);
    const TensorInfo* info = checkpoint_->find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->shape, t.shape) << t.name;
  }
  for (const std::string& name : checkpoint_->tensor_names())
    if (name.rfind("visual.", 0) == 0) held.push_back(name);
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(listed, held);
}

TEST_F(VisionEncoderTest, MatchesTransformers) {
  auto encoder = VisionEncoder::load(*checkpoint_, config_, *backend_);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  for (int i = 0; i < kNumCases; ++i) {
    SCOPED_TRACE(i);
    const std::vector<float> pixels = tensor_floats(tensor("pixel_values_" + std::to_string(i)));
    const std::vector<VisionGrid> grids = read_grids(tensor("grid_thw_" + std::to_string(i)));
    VisionTrace trace;
    auto embeds = (*encoder)->encode(pixels, grids, &trace);
    ASSERT_TRUE(embeds.ok()) << embeds.status();
    const struct {
      const char* name;
      const std::vector<float>& got;
    } stages[] = {{"patch_embed_", trace.patch_embed}, {"block0_", trace.block0}, {"embeds_", *embeds}};
    for (const auto& stage : stages) {
      const std::vector<float> want = tensor_floats(tensor(stage.name + std::to_string(i)));
      const Difference diff = compare(stage.got, want);
      std::cout << "case " << i << " " << stage.name << ": max |diff| " << diff.max_abs << ", max |ref| "
                << diff.max_ref << ", relative " << diff.relative() << "\n";
      EXPECT_LE(diff.relative(), kRelativeTolerance) << stage.name;
    }
  }
}

TEST_F(VisionEncoderTest, LayoutOfAnImageWithPartialWindows) {
  // 12 × 20 patches = 6 × 10 merge units; windows of 4 × 4 units: rows {4, 2} × columns {4, 4, 2}.
  const std::vector<VisionGrid> grids = {{1, 12, 20}};
  auto layout = plan_vision_layout(config_, grids, 240);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->window_starts, (std::vector<int32_t>{0, 64, 128, 160, 192, 224, 240}));
  EXPECT_EQ(layout->frame_starts, (std::vector<int32_t>{0, 240}));
  EXPECT_EQ(layout->num_tokens, 60);
  EXPECT_EQ(layout->window_index[0], 0);
  EXPECT_EQ(layout->window_index[4], 10);  // second row of the first window
  EXPECT_EQ(layout->window_index[16], 4);  // first unit of the second window
  for (size_t j = 0; j < layout->reverse_index.size(); ++j) {
    EXPECT_EQ(layout->window_index[static_cast<size_t>(layout->reverse_index[j])], static_cast<int32_t>(j));
  }
  // A video attends within each frame on the full-attention blocks.
  const std::vector<VisionGrid> video = {{2, 6, 8}};
  auto frames = plan_vision_layout(config_, video, 96);
  ASSERT_TRUE(frames.ok());
  EXPECT_EQ(frames->frame_starts, (std::vector<int32_t>{0, 48, 96}));
}

TEST_F(VisionEncoderTest, BadGridsAreAStatus) {
  auto encoder = VisionEncoder::load(*checkpoint_, config_, *backend_);
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  const std::vector<float> pixels(static_cast<size_t>(24 * config_.patch_dim()), 0.5f);
  const std::vector<VisionGrid> too_many = {{1, 4, 8}};
  const std::vector<VisionGrid> odd = {{1, 3, 8}};
  const std::vector<VisionGrid> zero = {{0, 4, 6}};
  for (const auto& grids : {too_many, odd, zero, std::vector<VisionGrid>{}}) {
    auto out = (*encoder)->encode(pixels, grids);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  }
  const std::vector<float> ragged(100, 0.0f);
  const std::vector<VisionGrid> one = {{1, 2, 2}};
  EXPECT_EQ((*encoder)->encode(ragged, one).status().code(), absl::StatusCode::kInvalidArgument);
}

// A copy of the fixture checkpoint with one tensor replaced (or dropped when `shape` is empty).
std::filesystem::path altered_checkpoint(const Checkpoint& checkpoint, const std::string& name,
                                         std::vector<int64_t> shape) {
  const auto dir = std::filesystem::temp_directory_path() / ("vision_encoder_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<TensorToWrite> tensors;
  std::vector<float> replacement;
  for (const auto& file : checkpoint.files()) {
    for (const TensorInfo& info : file->tensors()) {
      if (info.name != name) {
        tensors.push_back(TensorToWrite{info.name, info.dtype, info.shape, info.data});
      } else if (!shape.empty()) {
        int64_t count = 1;
        for (int64_t s : shape) count *= s;
        replacement.assign(static_cast<size_t>(count), 1.0f);
        tensors.push_back(TensorToWrite{info.name, DType::kF32, shape, std::as_bytes(std::span(replacement))});
      }
    }
  }
  BM_CHECK(write_safetensors(dir / "model.safetensors", tensors).ok());
  return dir;
}

TEST_F(VisionEncoderTest, BadCheckpointIsAStatus) {
  {
    const auto dir = altered_checkpoint(*checkpoint_, "visual.blocks.2.mlp.up_proj.weight", {121, 64});
    auto checkpoint = Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    auto encoder = VisionEncoder::load(**checkpoint, config_, *backend_);
    ASSERT_FALSE(encoder.ok());
    EXPECT_EQ(encoder.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(encoder.status().message().find("visual.blocks.2.mlp.up_proj.weight"), std::string::npos)
        << encoder.status();
    std::filesystem::remove_all(dir);
  }
  {
    const auto dir = altered_checkpoint(*checkpoint_, "visual.merger.mlp.2.bias", {});
    auto checkpoint = Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    auto encoder = VisionEncoder::load(**checkpoint, config_, *backend_);
    ASSERT_FALSE(encoder.ok());
    EXPECT_NE(encoder.status().message().find("has no tensor 'visual.merger.mlp.2.bias'"), std::string::npos)
        << encoder.status();
    std::filesystem::remove_all(dir);
  }
}

// Real checkpoints ship BF16 weights, which the CPU backend packs for its GEMM. The fixture's weights rounded to
// BF16 are written twice, as BF16 and (the same values) as F32; both load, and their outputs agree to the F32
// bound on the scalar path, which keeps F32 activations, and within kBf16ActivationTolerance on the avx512-bf16
// path where the CPU has it (also the default, auto, there), which rounds activations to bf16 (8 significant
// bits) inside the GEMM.
constexpr double kBf16ActivationTolerance = 3e-2;

// The fixture's weights rounded to a 16-bit float type `half` (BF16, or F16 as an AWQ checkpoint keeps its vision
// tower), written as that type or as the F32 values of the rounded numbers.
std::filesystem::path half_checkpoint(const Checkpoint& checkpoint, DType half, bool store_as_half,
                                      const std::string& tag) {
  BM_CHECK(half == DType::kBF16 || half == DType::kF16);
  const auto dir =
      std::filesystem::temp_directory_path() / ("vision_encoder_half_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<std::vector<uint16_t>> halves;
  std::vector<std::vector<float>> floats;
  std::vector<TensorToWrite> tensors;
  for (const auto& file : checkpoint.files()) {
    for (const TensorInfo& info : file->tensors()) {
      const std::vector<float> values = tensor_floats(info);
      std::vector<uint16_t> bits(values.size());
      std::vector<float> rounded(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        if (half == DType::kF16) {
          const _Float16 h = static_cast<_Float16>(values[i]);  // nearest even
          std::memcpy(&bits[i], &h, 2);
          rounded[i] = static_cast<float>(h);
          continue;
        }
        bits[i] = cpu::f32_to_bf16(values[i]);  // nearest even
        rounded[i] = cpu::bf16_to_f32(bits[i]);
      }
      if (store_as_half) {
        halves.push_back(std::move(bits));
        tensors.push_back(TensorToWrite{info.name, half, info.shape, {}});
      } else {
        floats.push_back(std::move(rounded));
        tensors.push_back(TensorToWrite{info.name, DType::kF32, info.shape, {}});
      }
    }
  }
  // The outer vectors may have reallocated while growing: take the spans once they are final.
  size_t h = 0, f = 0;
  for (TensorToWrite& t : tensors) {
    t.data = t.dtype == DType::kF32 ? std::as_bytes(std::span(floats[f++])) : std::as_bytes(std::span(halves[h++]));
  }
  BM_CHECK(write_safetensors(dir / "model.safetensors", tensors).ok());
  return dir;
}

TEST_F(VisionEncoderTest, Bf16CheckpointsRunThroughThePackedGemm) {
  const auto f32_dir = half_checkpoint(*checkpoint_, DType::kBF16, /*store_as_half=*/false, "f32");
  const auto bf16_dir = half_checkpoint(*checkpoint_, DType::kBF16, /*store_as_half=*/true, "bf16");
  auto f32_checkpoint = Checkpoint::open(f32_dir);
  auto bf16_checkpoint_opened = Checkpoint::open(bf16_dir);
  ASSERT_TRUE(f32_checkpoint.ok() && bf16_checkpoint_opened.ok());
  const std::vector<float> pixels = tensor_floats(tensor("pixel_values_1"));
  const std::vector<VisionGrid> grids = read_grids(tensor("grid_thw_1"));
  auto reference = VisionEncoder::load(**f32_checkpoint, config_, *backend_);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto want = (*reference)->encode(pixels, grids);
  ASSERT_TRUE(want.ok()) << want.status();
  struct Path {
    cpu::GemmPath path;
    const char* name;
    double tolerance;
  };
  std::vector<Path> paths = {{cpu::GemmPath::kScalar, "scalar", kRelativeTolerance},
                             {cpu::GemmPath::kAuto, "auto",
                              cpu::best_gemm_path() == cpu::GemmPath::kAvx512Bf16 ? kBf16ActivationTolerance
                                                                                  : kRelativeTolerance}};
  if (cpu::cpu_has_gemm_path(cpu::GemmPath::kAvx512Bf16)) {
    paths.push_back({cpu::GemmPath::kAvx512Bf16, "avx512-bf16", kBf16ActivationTolerance});
  }
  for (const auto& p : paths) {
    auto backend = create_cpu_backend(CpuBackendOptions{0, p.path});
    auto encoder = VisionEncoder::load(**bf16_checkpoint_opened, config_, *backend);
    ASSERT_TRUE(encoder.ok()) << encoder.status();
    auto got = (*encoder)->encode(pixels, grids);
    ASSERT_TRUE(got.ok()) << got.status();
    const Difference diff = compare(*got, *want);
    std::cout << "bf16 weights, " << p.name << " GEMM path: max |diff| " << diff.max_abs << ", relative "
              << diff.relative() << "\n";
    EXPECT_LE(diff.relative(), p.tolerance) << p.name;
  }
  std::filesystem::remove_all(f32_dir);
  std::filesystem::remove_all(bf16_dir);
}

// An AWQ Qwen2.5-VL checkpoint keeps its vision tower in F16 (modules_to_not_convert: the tower stays float): the
// CPU backend reads F16 weights as they are, so they give what the same numbers in F32 give.
TEST_F(VisionEncoderTest, F16CheckpointsGiveWhatTheSameNumbersInF32Give) {
  const auto f32_dir = half_checkpoint(*checkpoint_, DType::kF16, /*store_as_half=*/false, "f16-as-f32");
  const auto f16_dir = half_checkpoint(*checkpoint_, DType::kF16, /*store_as_half=*/true, "f16");
  auto f32_checkpoint = Checkpoint::open(f32_dir);
  auto f16_checkpoint = Checkpoint::open(f16_dir);
  ASSERT_TRUE(f32_checkpoint.ok() && f16_checkpoint.ok());
  const std::vector<float> pixels = tensor_floats(tensor("pixel_values_0"));
  const std::vector<VisionGrid> grids = read_grids(tensor("grid_thw_0"));
  auto reference = VisionEncoder::load(**f32_checkpoint, config_, *backend_);
  auto encoder = VisionEncoder::load(**f16_checkpoint, config_, *backend_);
  ASSERT_TRUE(reference.ok()) << reference.status();
  ASSERT_TRUE(encoder.ok()) << encoder.status();
  auto want = (*reference)->encode(pixels, grids);
  auto got = (*encoder)->encode(pixels, grids);
  ASSERT_TRUE(want.ok() && got.ok());
  const Difference diff = compare(*got, *want);
  std::cout << "f16 weights: max |diff| " << diff.max_abs << ", relative " << diff.relative() << "\n";
  EXPECT_LE(diff.relative(), kRelativeTolerance);
  std::filesystem::remove_all(f32_dir);
  std::filesystem::remove_all(f16_dir);
}

TEST_F(VisionEncoderTest, ABackendWithoutEncoderOpsIsRefusedAtLoad) {
  // The CPU backend wrapped so that it does not announce the encoder ops (a backend without them).
  class Hidden final : public testing::ForwardingBackend {
   public:
    using ForwardingBackend::ForwardingBackend;
    std::string_view name() const override { return "hidden"; }
  };
  Hidden hidden(*backend_);
  auto encoder = VisionEncoder::load(*checkpoint_, config_, hidden);
  ASSERT_FALSE(encoder.ok());
  EXPECT_EQ(encoder.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(encoder.status().message().find("hidden backend"), std::string::npos) << encoder.status();
}

TEST(VisionConfigTest, RefusesWhatTheTowerDoesNotRun) {
  const std::string base =
      R"({"vision_config": {"depth": 2, "hidden_size": 64, "intermediate_size": 8, "num_heads": 2,
          "out_hidden_size": 16, "fullatt_block_indexes": [1] %s}})";
  auto with = [&](const std::string& extra) {
    std::string text = base;
    text.replace(text.find("%s"), 2, extra);
    return parse_vision_config(text);
  };
  EXPECT_TRUE(with("").ok()) << with("").status();
  EXPECT_EQ(with(R"(, "hidden_act": "gelu")").status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(with(R"(, "num_heads": 3)").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with(R"(, "window_size": 100)").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_vision_config(R"({"hidden_size": 4})").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(parse_vision_config("not json").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bm::engine
