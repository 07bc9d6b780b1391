// Qwen2.5-VL image encoding time on a backend: a random-weight vision tower with a real model's config (BF16
// weights, as the published checkpoints), and synthetic square images of the given sizes through the preprocessing
// (smart_resize, bicubic, normalize, patchify) and the tower. Prints, per size, the grid, the tokens, the
// preprocessing and encoding times (median of --repeats) and the tower's GEMM FLOPs per second. Asserts nothing.
//
// Usage: bm_vision_bench [--model-dir DIR] [--sizes 448,1024] [--backend cpu|cuda] [--threads N] [--repeats R]
//                        [--depth D]
// --model-dir: a folder with the model's config.json and preprocessor_config.json (default: the 3B's under
// $BMSERVER_SHARED_MODELS or ../shared/models). --depth: run only the first D blocks (a smoke run; the figures are
// then not the model's).
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/model/checkpoint.h"
#include "engine/model/safetensors_writer.h"
#include "engine/models/vision_encoder.h"
#include "engine/vision/image_processor.h"
#include "engine/vision/processor_config.h"

namespace {

using namespace bm::engine;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  fs::path model_dir;
  std::vector<int> sizes = {448, 1024};
  std::string backend = "cpu";
  int threads = 0;
  int repeats = 3;
  int depth = 0;  // 0: the config's
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bm_vision_bench: %s\nusage: bm_vision_bench [--model-dir DIR] [--sizes 448,1024] [--backend cpu|cuda] "
               "[--threads N] [--repeats R] [--depth D]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  const char* shared = std::getenv("BMSERVER_SHARED_MODELS");
  o.model_dir = fs::path(shared != nullptr ? shared : "../shared/models") / "Qwen/Qwen2.5-VL-3B-Instruct";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const std::string value = argv[++i];
    auto number = [&] {
      int v = 0;
      if (!absl::SimpleAtoi(value, &v) || v < 0) usage(("bad number for " + flag).c_str());
      return v;
    };
    if (flag == "--model-dir") {
      o.model_dir = value;
    } else if (flag == "--sizes") {
      o.sizes.clear();
      for (const std::string& part : std::vector<std::string>(absl::StrSplit(value, ','))) {
        int v = 0;
        if (!absl::SimpleAtoi(part, &v) || v < 1) usage("bad --sizes");
        o.sizes.push_back(v);
      }
    } else if (flag == "--backend") {
      o.backend = value;
    } else if (flag == "--threads") {
      o.threads = number();
    } else if (flag == "--repeats") {
      o.repeats = std::max(1, number());
    } else if (flag == "--depth") {
      o.depth = number();
    } else {
      usage(("unknown flag " + flag).c_str());
    }
  }
  return o;
}

// The tower's weights, random BF16 (norms 1), written where VisionEncoder::load can read them.
fs::path write_random_tower(const VisionConfig& config) {
  const fs::path dir = fs::temp_directory_path() / ("bm_vision_bench_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const std::vector<VisionTensorShape> shapes = vision_checkpoint_tensors(config);
  std::vector<std::vector<uint16_t>> data;
  std::vector<TensorToWrite> tensors;
  data.reserve(shapes.size());
  for (const VisionTensorShape& t : shapes) {
    int64_t count = 1;
    for (int64_t d : t.shape) count *= d;
    const bool norm = t.name.find("norm") != std::string::npos || t.name.find("ln_q") != std::string::npos;
    std::vector<uint16_t> values(static_cast<size_t>(count));
    for (uint16_t& v : values) v = cpu::f32_to_bf16(norm ? 1.0f : normal(rng));
    data.push_back(std::move(values));
    tensors.push_back(TensorToWrite{t.name, DType::kBF16, t.shape, std::as_bytes(std::span(data.back()))});
  }
  const absl::Status written = write_safetensors(dir / "model.safetensors", tensors);
  if (!written.ok()) {
    std::fprintf(stderr, "bm_vision_bench: %s\n", std::string(written.message()).c_str());
    std::exit(1);
  }
  return dir;
}

// A smooth synthetic picture: resampling costs the same whatever the content.
vision::RgbImage synthetic_image(int size) {
  vision::RgbImage image;
  image.width = image.height = size;
  image.pixels.resize(static_cast<size_t>(size) * size * 3);
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x)
      for (int c = 0; c < 3; ++c)
        image.pixels[(static_cast<size_t>(y) * size + x) * 3 + c] = static_cast<uint8_t>((x * (c + 1) + y * 3) & 255);
  return image;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (!fs::exists(o.model_dir / "config.json")) {
    std::printf("bm_vision_bench: skipped, %s holds no config.json (give --model-dir)\n", o.model_dir.c_str());
    return 100;  // ctest's SKIP_RETURN_CODE
  }
  absl::StatusOr<VisionConfig> config = load_vision_config(o.model_dir);
  absl::StatusOr<vision::ProcessorConfig> processor = vision::load_processor_config(o.model_dir);
  if (!config.ok() || !processor.ok()) {
    std::fprintf(stderr, "bm_vision_bench: %s\n",
                 std::string((!config.ok() ? config.status() : processor.status()).message()).c_str());
    return 1;
  }
  if (o.depth > 0) {
    config->depth = std::min(config->depth, o.depth);
    std::erase_if(config->fullatt_block_indexes, [&](int32_t b) { return b >= config->depth; });
  }
  absl::StatusOr<std::unique_ptr<Backend>> backend =
      o.backend == "cuda" ? create_cuda_backend(0) : create_cpu_backend(CpuBackendOptions{o.threads});
  if (!backend.ok()) {
    std::fprintf(stderr, "bm_vision_bench: %s\n", std::string(backend.status().message()).c_str());
    return 1;
  }
  const fs::path dir = write_random_tower(*config);
  absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint = Checkpoint::open(dir);
  absl::StatusOr<std::unique_ptr<VisionEncoder>> encoder =
      checkpoint.ok() ? VisionEncoder::load(**checkpoint, *config, **backend)
                      : absl::StatusOr<std::unique_ptr<VisionEncoder>>(checkpoint.status());
  checkpoint = nullptr;
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  if (!encoder.ok()) {
    std::fprintf(stderr, "bm_vision_bench: %s\n", std::string(encoder.status().message()).c_str());
    return 1;
  }
  std::printf("vision tower of %s: depth %d, hidden %d, %d heads, backend %s (%s threads), median of %d\n",
              o.model_dir.filename().c_str(), config->depth, config->hidden_size, config->num_heads, o.backend.c_str(),
              o.threads == 0 ? "all" : std::to_string(o.threads).c_str(), o.repeats);
  const int64_t d = config->hidden_size, ff = config->intermediate_size, merged = d * config->merge_unit();
  for (int size : o.sizes) {
    const vision::RgbImage image = synthetic_image(size);
    std::vector<double> prep_ms, encode_ms;
    absl::StatusOr<vision::PatchedMedia> media;
    for (int r = 0; r < o.repeats; ++r) {
      const auto t0 = Clock::now();
      media = vision::preprocess_image(image, *processor);
      const auto t1 = Clock::now();
      if (!media.ok()) break;
      const VisionGrid grids[] = {{static_cast<int32_t>(media->grid_thw[0]), static_cast<int32_t>(media->grid_thw[1]),
                                   static_cast<int32_t>(media->grid_thw[2])}};
      absl::StatusOr<std::vector<float>> out = (*encoder)->encode(media->pixel_values, grids);
      const auto t2 = Clock::now();
      if (!out.ok()) {
        std::fprintf(stderr, "bm_vision_bench: %s\n", std::string(out.status().message()).c_str());
        return 1;
      }
      prep_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      encode_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    if (!media.ok()) {
      std::fprintf(stderr, "bm_vision_bench: %s\n", std::string(media.status().message()).c_str());
      return 1;
    }
    const int64_t patches = media->num_patches;
    // GEMM FLOPs: patch embedding, per block qkv + proj + three MLP projections, the merger's two layers.
    const double flops =
        2.0 * patches * (static_cast<double>(config->patch_dim()) * d + config->depth * (4.0 * d * d + 3.0 * d * ff)) +
        2.0 * (patches / config->merge_unit()) *
            (static_cast<double>(merged) * merged + static_cast<double>(merged) * config->out_hidden_size);
    const double encode = median(encode_ms);
    std::printf("%4dx%-4d  grid %dx%dx%d  %5lld tokens  preprocess %8.1f ms  encode %10.1f ms  (%.1f GFLOP/s GEMM)\n",
                size, size, static_cast<int>(media->grid_thw[0]), static_cast<int>(media->grid_thw[1]),
                static_cast<int>(media->grid_thw[2]), static_cast<long long>(media->num_tokens), median(prep_ms),
                encode, flops / (encode * 1e6));
  }
  return 0;
}
