#pragma once
// The image workload's pictures (docs/benchmark.md): deterministic synthetic RGB images (a smooth gradient with
// seeded noise, so that every request's image differs and neither the encoder cache nor the prefix cache can
// hide the vision tower's work) and a minimal PNG writer to send them as data URLs.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::daemon::bench {

// Sides the workload accepts: Qwen2.5-VL's processor refuses sides below its 28-pixel factor; at 4096 × 4096 one
// uncompressed image is already 48 MiB of PNG (64 MiB as base64), over the server's 32 MiB body limit, so the
// server's own limits refuse what is too large with its reason, and nothing larger is worth generating.
inline constexpr int32_t kMinImageSide = 28;
inline constexpr int32_t kMaxImageSide = 4096;

struct SyntheticImage {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3, row-major
};

// Image `index` of the workload seeded with `seed`: the same (seed, index, size) always gives the same pixels.
SyntheticImage make_synthetic_image(int32_t width, int32_t height, uint64_t seed, uint64_t index);

// An 8-bit RGB PNG (colour type 2, no interlace, filter 0 on every row) whose zlib stream uses stored
// (uncompressed) deflate blocks. Written by hand rather than with libpng's write API: the daemon then needs no
// codec library for the benchmark, the bytes are the same on every machine, and noisy pixels would barely
// compress anyway. Any PNG decoder reads it.
std::string encode_png(const SyntheticImage& image);

// The image workload's settings as a RunBenchmarkRequest carries them: a sentence naming the flag when wrong.
absl::Status check_image_workload(int32_t images_per_prompt, int32_t width, int32_t height);

// "data:image/png;base64,…"
std::string png_data_url(const std::string& png);

}  // namespace bm::daemon::bench
