#pragma once
// The multimodal cases of tests/data/models/qwen2_5_vl-text (tests/tools/vl_make_media_fixtures.py): prompts with
// images and videos, their pixels, and what transformers computes for them.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "engine/model/safetensors_file.h"
#include "engine/models/prompt_media.h"
#include "nlohmann/json.hpp"
#include "tests/unit/engine/model/tensor_floats.h"

namespace bm::engine::media_fixture {

inline std::filesystem::path model_dir() {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  return std::filesystem::path(source != nullptr ? source : ".") / "tests/data/models/qwen2_5_vl-text";
}

struct MediaCase {
  std::string name;
  std::vector<int32_t> ids;
  PromptMedia media;
  int32_t rope_delta = 0;
  std::vector<float> prefill_logits;
  std::vector<int32_t> greedy_ids;
  std::vector<std::vector<float>> step_logits;
};

inline std::vector<MediaCase> read_cases() {
  std::ifstream in(model_dir() / "media_reference.json");
  const nlohmann::json reference = nlohmann::json::parse(in);
  auto pixels = SafetensorsFile::open(model_dir() / "media_cases.safetensors");
  BM_CHECK(pixels.ok());
  std::vector<MediaCase> cases;
  for (const auto& entry : reference.at("cases")) {
    MediaCase c;
    c.name = entry.at("name").get<std::string>();
    c.ids = entry.at("ids").get<std::vector<int32_t>>();
    c.rope_delta = entry.at("rope_delta").get<int32_t>();
    c.prefill_logits = entry.at("prefill_logits").get<std::vector<float>>();
    c.greedy_ids = entry.at("greedy_ids").get<std::vector<int32_t>>();
    c.step_logits = entry.at("step_logits").get<std::vector<std::vector<float>>>();
    const TensorInfo* all = (*pixels)->find(c.name + ".pixel_values");
    BM_CHECK(all != nullptr && all->dtype == DType::kBF16);
    const std::vector<float> values = testing::tensor_floats(*all);
    int64_t row = 0;
    const int64_t cols = all->num_elements() / all->shape[0];
    for (const auto& m : entry.at("media")) {
      MediaItem item;
      item.kind = m.at("kind") == "image" ? MediaKind::kImage : MediaKind::kVideo;
      const auto grid = m.at("grid_thw").get<std::vector<int32_t>>();
      item.grid = VisionGrid{grid[0], grid[1], grid[2]};
      if (m.contains("second_per_grid_t")) item.second_per_grid_t = m.at("second_per_grid_t").get<float>();
      item.pixel_values.assign(values.begin() + row * cols, values.begin() + (row + item.grid.num_patches()) * cols);
      row += item.grid.num_patches();
      item.hash = media_hash(item);
      c.media.items.push_back(std::move(item));
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace bm::engine::media_fixture
