#include "engine/model/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

using nlohmann::json;

constexpr int64_t kMaxElements = int64_t{1} << 48;  // far above any real tensor; keeps byte counts in int64

absl::Status header_error(const std::filesystem::path& path, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path.string(), ": ", std::string(what)));
}

absl::Status tensor_error(const std::filesystem::path& path, std::string_view tensor, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors file ", path.string(), ", tensor '", std::string(tensor), "': ", std::string(what)));
}

uint64_t read_le64(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

// Parses the JSON header, recording a top-level key that occurs twice (nlohmann would keep only the last).
absl::StatusOr<json> parse_header_json(std::string_view text, const std::filesystem::path& path) {
  std::set<std::string> keys;
  std::string duplicate;
  json::parser_callback_t on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!keys.insert(parsed.get<std::string>()).second) duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json header = json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/false);
  if (header.is_discarded()) return header_error(path, "the header is not valid JSON");
  if (!header.is_object()) return header_error(path, "the header is not a JSON object");
  if (!duplicate.empty()) return header_error(path, absl::StrCat("tensor '", duplicate, "' is listed twice"));
  return header;
}

absl::StatusOr<std::vector<int64_t>> parse_shape(const json& entry, const std::filesystem::path& path,
                                                 const std::string& name, int64_t& num_elements) {
  const auto it = entry.find("shape");
  if (it == entry.end() || !it->is_array()) return tensor_error(path, name, "has no 'shape' array");
  std::vector<int64_t> shape;
  num_elements = 1;
  for (const json& dim : *it) {
    if (!dim.is_number_unsigned()) return tensor_error(path, name, "has a shape entry that is not a count");
    const uint64_t value = dim.get<uint64_t>();
    if (value > static_cast<uint64_t>(kMaxElements) ||
        (value != 0 && num_elements > kMaxElements / static_cast<int64_t>(value))) {
      return tensor_error(path, name, "has a shape too large to address");
    }
    shape.push_back(static_cast<int64_t>(value));
    num_elements *= static_cast<int64_t>(value);
  }
  return shape;
}

}  // namespace

int64_t TensorInfo::num_elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    const std::string message =
        absl::StrCat("cannot open safetensors file ", path.string(), ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("safetensors file ", path.string(), " is not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const size_t size = static_cast<size_t>(info.st_size);
  if (size > 0) {
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const int error = errno;
      ::close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot map safetensors file ", path.string(), ": ", std::strerror(error)));
    }
    file->mapping_ = mapping;
    file->mapping_bytes_ = size;
  }
  ::close(fd);  // the mapping keeps the file alive
  const std::span<const std::byte> bytes(static_cast<const std::byte*>(file->mapping_), size);
  if (absl::Status status = file->parse(bytes); !status.ok()) return status;
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::from_bytes(std::span<const std::byte> bytes,
                                                                             const std::filesystem::path& name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  if (absl::Status status = file->parse(bytes); !status.ok()) return status;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_bytes_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                   [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

absl::Status SafetensorsFile::parse(std::span<const std::byte> bytes) {
  if (bytes.size() < 8) {
    return header_error(
        path_, absl::StrCat("the file is truncated: ", bytes.size(), " bytes, shorter than the 8-byte header length"));
  }
  const uint64_t header_bytes = read_le64(bytes.data());
  if (header_bytes > kMaxHeaderBytes) {
    return header_error(path_, absl::StrCat("the header length ", header_bytes, " exceeds the limit of ",
                                            kMaxHeaderBytes, " bytes (corrupt file?)"));
  }
  if (header_bytes > bytes.size() - 8) {
    return header_error(path_, absl::StrCat("the file is truncated: the header needs ", header_bytes,
                                            " bytes but only ", bytes.size() - 8, " follow the length"));
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), header_bytes);
  absl::StatusOr<json> header = parse_header_json(text, path_);
  if (!header.ok()) return header.status();

  const std::span<const std::byte> data = bytes.subspan(8 + header_bytes);
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : header->items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return header_error(path_, "'__metadata__' is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) return header_error(path_, absl::StrCat("metadata '", key, "' is not a string"));
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) return tensor_error(path_, name, "is not described by an object");
    const auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return tensor_error(path_, name, "has no 'dtype'");
    const std::optional<DType> dtype = parse_dtype(dtype_it->get<std::string>());
    if (!dtype) {
      return tensor_error(path_, name, absl::StrCat("has unsupported dtype '", dtype_it->get<std::string>(), "'"));
    }
    int64_t num_elements = 0;
    absl::StatusOr<std::vector<int64_t>> shape = parse_shape(entry, path_, name, num_elements);
    if (!shape.ok()) return shape.status();
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned()) {
      return tensor_error(path_, name, "has no 'data_offsets' pair of byte offsets");
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>();
    const uint64_t end = (*offsets)[1].get<uint64_t>();
    if (end < begin) return tensor_error(path_, name, "has data_offsets that end before they begin");
    const uint64_t expected = static_cast<uint64_t>(num_elements) * static_cast<uint64_t>(dtype_size(*dtype));
    if (end - begin != expected) {
      return tensor_error(path_, name,
                          absl::StrCat("has ", end - begin, " data bytes but its shape and dtype need ", expected));
    }
    if (end > data.size()) {
      return tensor_error(path_, name,
                          absl::StrCat("ends at data byte ", end, " but the file holds only ", data.size(),
                                       " data bytes (truncated file?)"));
    }
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    info.shape = std::move(*shape);
    info.data = data.subspan(begin, end - begin);
    tensors_.push_back(std::move(info));
    ranges.push_back(Range{begin, end, nullptr});
  }
  for (size_t i = 0; i < tensors_.size(); ++i) ranges[i].name = &tensors_[i].name;
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      return tensor_error(path_, *ranges[i].name,
                          absl::StrCat("overlaps tensor '", *ranges[i - 1].name, "' in the data section"));
    }
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return absl::OkStatus();
}

}  // namespace bm::engine
