#include "engine/models/rope_frequencies.h"

#include <cmath>
#include <numbers>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bm::engine {
namespace {

std::vector<float> default_frequencies(double theta, int32_t head_dim) {
  std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
  const float base = static_cast<float>(theta);
  for (int32_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(base, exponent);
  }
  return inv_freq;
}

absl::StatusOr<std::vector<float>> llama3_frequencies(const RopeConfig& rope, int32_t head_dim,
                                                      int32_t max_position_embeddings) {
  const float factor = static_cast<float>(rope.factor);
  const float low_freq_factor = static_cast<float>(rope.low_freq_factor);
  const float high_freq_factor = static_cast<float>(rope.high_freq_factor);
  const float old_context_len = static_cast<float>(
      rope.original_max_position_embeddings > 0 ? rope.original_max_position_embeddings : max_position_embeddings);
  if (!(factor > 0) || !(high_freq_factor > low_freq_factor) || !(low_freq_factor > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("llama3 rope scaling needs factor > 0 and high_freq_factor > ",
                                                   "low_freq_factor > 0, got factor ", rope.factor, ", low ",
                                                   rope.low_freq_factor, ", high ", rope.high_freq_factor));
  }
  const float low_freq_wavelen = old_context_len / low_freq_factor;
  const float high_freq_wavelen = old_context_len / high_freq_factor;
  std::vector<float> inv_freq = default_frequencies(rope.theta, head_dim);
  for (float& frequency : inv_freq) {
    const float wavelen = static_cast<float>(2 * std::numbers::pi) / frequency;
    const float scaled = wavelen > low_freq_wavelen ? frequency / factor : frequency;
    const bool is_medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    if (is_medium) {
      const float smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      frequency = (1 - smooth) * scaled / factor + smooth * scaled;
    } else {
      frequency = scaled;
    }
  }
  return inv_freq;
}

}  // namespace

absl::StatusOr<std::vector<float>> rope_inverse_frequencies(const RopeConfig& rope, int32_t head_dim,
                                                            int32_t max_position_embeddings) {
  // "mrope" (Qwen2.5-VL's hub configs) has the default frequencies; transformers renames it to "default" too.
  if (rope.type == "default" || rope.type == "mrope" || rope.type.empty())
    return default_frequencies(rope.theta, head_dim);
  if (rope.type == "llama3") return llama3_frequencies(rope, head_dim, max_position_embeddings);
  return absl::UnimplementedError(absl::StrCat("rope type '", rope.type, "' is not supported yet"));
}

}  // namespace bm::engine
