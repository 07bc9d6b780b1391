// libFuzzer target for the safetensors header parser (engine/model/safetensors_file): arbitrary bytes must give a
// status or a file whose every tensor is safe to read. Checks, besides "no crash": each tensor's data lies inside
// the input, its byte count is its shape times its dtype size, the tensors do not overlap, are sorted by name and
// find() returns each one.
//
// Input: byte 0 picks the framing. Even: the rest is a whole file, as read from disk. Odd: the rest is the JSON
// header, framed here with a correct length and followed by 0-255 data bytes (byte 1), so the fuzzer spends its
// time in the header rules rather than on guessing an 8-byte length.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "engine/model/safetensors_file.h"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "safetensors_fuzz: %s\n", what);
    std::abort();
  }
}

void check_file(const bm::engine::SafetensorsFile& file, std::span<const std::byte> bytes) {
  const std::byte* begin = bytes.data();
  const std::byte* end = bytes.data() + bytes.size();
  std::vector<std::pair<const std::byte*, const std::byte*>> ranges;
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    const bm::engine::TensorInfo& t = file.tensors()[i];
    if (i > 0) require(file.tensors()[i - 1].name < t.name, "tensors are not sorted by unique name");
    require(file.find(t.name) == &t, "find() does not return the tensor");
    int64_t elements = t.num_elements();
    require(elements >= 0, "negative element count");
    require(static_cast<uint64_t>(elements) * static_cast<uint64_t>(bm::engine::dtype_size(t.dtype)) == t.data.size(),
            "data size is not shape x dtype size");
    if (t.data.empty()) continue;
    require(t.data.data() >= begin && t.data.data() + t.data.size() <= end, "tensor data outside the input");
    // Touch both ends so ASan sees any read outside the input.
    sink = sink ^ static_cast<uint8_t>(t.data.front()) ^ static_cast<uint8_t>(t.data.back());
    ranges.emplace_back(t.data.data(), t.data.data() + t.data.size());
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) require(ranges[i].first >= ranges[i - 1].second, "tensors overlap");
  for (const auto& [key, value] : file.metadata()) sink = sink ^ static_cast<uint8_t>(key.size() + value.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<std::byte> bytes;
  if ((data[0] & 1) == 0) {
    bytes.assign(reinterpret_cast<const std::byte*>(data + 1), reinterpret_cast<const std::byte*>(data + size));
  } else {
    if (size < 2) return 0;
    size_t num_data_bytes = data[1];
    uint64_t header_bytes = size - 2;
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::byte>((header_bytes >> (8 * i)) & 0xff));
    bytes.insert(bytes.end(), reinterpret_cast<const std::byte*>(data + 2),
                 reinterpret_cast<const std::byte*>(data + size));
    for (size_t i = 0; i < num_data_bytes; ++i) bytes.push_back(static_cast<std::byte>(i));
  }
  // An exact-size heap copy, so ASan flags a read one byte past the end.
  std::vector<std::byte> exact(bytes.begin(), bytes.end());
  absl::StatusOr<std::unique_ptr<bm::engine::SafetensorsFile>> file =
      bm::engine::SafetensorsFile::from_bytes(std::span<const std::byte>(exact.data(), exact.size()), "fuzz");
  if (file.ok())
    check_file(**file, exact);
  else
    require(!file.status().message().empty(), "an error without a message");
  return 0;
}
