#include "engine/models/mrope_rotary_table.h"

#include <cmath>

#include "common/check.h"

namespace bm::engine {

RotaryTable mrope_rotary_table(std::span<const float> inv_freq, std::span<const int32_t> mrope_section,
                               const std::array<std::span<const int64_t>, 3>& rows) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  const int64_t n = static_cast<int64_t>(rows[0].size());
  BM_CHECK(rows[1].size() == rows[0].size() && rows[2].size() == rows[0].size());
  // Which row each frequency turns with: chunk c of mrope_section takes row c % 3.
  std::vector<int32_t> row_of(static_cast<size_t>(half));
  int64_t next = 0;
  for (size_t chunk = 0; chunk < mrope_section.size(); ++chunk) {
    BM_CHECK(mrope_section[chunk] >= 0 && next + mrope_section[chunk] <= half);
    for (int32_t i = 0; i < mrope_section[chunk]; ++i)
      row_of[static_cast<size_t>(next++)] = static_cast<int32_t>(chunk % 3);
  }
  BM_CHECK(next == half);
  RotaryTable table{n, half, std::vector<float>(static_cast<size_t>(n * half)),
                    std::vector<float>(static_cast<size_t>(n * half))};
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float position = static_cast<float>(rows[static_cast<size_t>(row_of[static_cast<size_t>(i)])][t]);
      const float angle = position * inv_freq[static_cast<size_t>(i)];
      table.cos[static_cast<size_t>(t * half + i)] = std::cos(angle);
      table.sin[static_cast<size_t>(t * half + i)] = std::sin(angle);
    }
  }
  return table;
}

}  // namespace bm::engine
