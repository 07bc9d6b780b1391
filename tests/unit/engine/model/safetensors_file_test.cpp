#include "engine/model/safetensors_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "engine/model/safetensors_writer.h"
#include "tests/unit/engine/model/test_files.h"

namespace bm::engine {
namespace {

using ::testing::HasSubstr;
using testing::safetensors_bytes;
using testing::TempDir;
using testing::write_file;

// Opens a file made of `header` and `data` and returns the error message (empty when it opened).
std::string open_error(const TempDir& dir, const std::string& header, const std::string& data) {
  const auto path = dir.path() / "model.safetensors";
  write_file(path, safetensors_bytes(header, data));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(path);
  return file.ok() ? std::string() : std::string(file.status().message());
}

TEST(SafetensorsFileTest, ReadsTensorsWrittenByTheWriter) {
  TempDir dir;
  const std::vector<float> a = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const std::vector<uint16_t> b = {0x3f80, 0x4000};
  const auto path = dir.path() / "x.safetensors";
  ASSERT_TRUE(write_safetensors(path, {{"a", DType::kF32, {2, 3}, std::as_bytes(std::span(a))},
                                       {"b", DType::kBF16, {2}, std::as_bytes(std::span(b))}})
                  .ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 2u);
  const TensorInfo* tensor = (*file)->find("a");
  ASSERT_NE(tensor, nullptr);
  EXPECT_EQ(tensor->dtype, DType::kF32);
  EXPECT_EQ(tensor->shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(tensor->data.size(), a.size() * sizeof(float));
  EXPECT_EQ(std::memcmp(tensor->data.data(), a.data(), tensor->data.size()), 0);
  EXPECT_EQ((*file)->find("b")->num_elements(), 2);
  EXPECT_EQ((*file)->find("c"), nullptr);
}

TEST(SafetensorsFileTest, ReadsMetadataAndEmptyTensors) {
  TempDir dir;
  EXPECT_EQ(open_error(dir,
                       R"({"__metadata__":{"format":"pt"},"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
                       R"("s":{"dtype":"I32","shape":[],"data_offsets":[0,4]}})",
                       std::string(4, '\0')),
            "");
}

TEST(SafetensorsFileTest, MissingFileIsNotFound) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(dir.path() / "absent.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(absl::IsNotFound(file.status()));
  EXPECT_THAT(file.status().message(), HasSubstr("absent.safetensors"));
}

TEST(SafetensorsFileTest, TruncatedFilesNameTheFileAndTensor) {
  TempDir dir;
  write_file(dir.path() / "tiny.safetensors", "abc");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> tiny = SafetensorsFile::open(dir.path() / "tiny.safetensors");
  ASSERT_FALSE(tiny.ok());
  EXPECT_THAT(tiny.status().message(), HasSubstr("tiny.safetensors"));
  EXPECT_THAT(tiny.status().message(), HasSubstr("truncated"));

  // The header length promises more bytes than there are.
  std::string bytes = safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "");
  write_file(dir.path() / "short_header.safetensors", bytes.substr(0, 20));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> short_header =
      SafetensorsFile::open(dir.path() / "short_header.safetensors");
  ASSERT_FALSE(short_header.ok());
  EXPECT_THAT(short_header.status().message(), HasSubstr("truncated"));

  // The data section stops before the tensor ends (a cut-off download).
  const std::string message =
      open_error(dir, R"({"weight":{"dtype":"BF16","shape":[4,4],"data_offsets":[0,32]}})", std::string(20, '\0'));
  EXPECT_THAT(message, HasSubstr("model.safetensors"));
  EXPECT_THAT(message, HasSubstr("'weight'"));
  EXPECT_THAT(message, HasSubstr("truncated"));
}

TEST(SafetensorsFileTest, RejectsCorruptHeaders) {
  TempDir dir;
  const std::string data(64, '\0');
  EXPECT_THAT(open_error(dir, "not json", data), HasSubstr("not valid JSON"));
  EXPECT_THAT(open_error(dir, "[1,2]", data), HasSubstr("not a JSON object"));
  EXPECT_THAT(open_error(dir, R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", data),
              HasSubstr("unsupported dtype 'Q4'"));
  EXPECT_THAT(open_error(dir, R"({"a":{"shape":[1],"data_offsets":[0,4]}})", data), HasSubstr("no 'dtype'"));
  EXPECT_THAT(open_error(dir, R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", data),
              HasSubstr("shape entry"));
  EXPECT_THAT(open_error(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data),
              HasSubstr("data_offsets"));
  EXPECT_THAT(open_error(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data),
              HasSubstr("end before they begin"));
  // 3 F32 elements need 12 bytes, not 8.
  EXPECT_THAT(open_error(dir, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data), HasSubstr("need 12"));
  EXPECT_THAT(open_error(dir, R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data),
              HasSubstr("too large"));
  EXPECT_THAT(open_error(dir, R"({"__metadata__":{"n":1}})", data), HasSubstr("metadata 'n'"));
}

TEST(SafetensorsFileTest, RejectsOverlappingAndDuplicateTensors) {
  TempDir dir;
  const std::string data(64, '\0');
  const std::string overlap = open_error(dir,
                                         R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                         R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                                         data);
  EXPECT_THAT(overlap, HasSubstr("overlaps"));
  EXPECT_THAT(overlap, HasSubstr("'a'"));
  EXPECT_THAT(open_error(dir,
                         R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                         R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                         data),
              HasSubstr("listed twice"));
}

TEST(SafetensorsFileTest, RejectsAHugeHeaderLength) {
  TempDir dir;
  std::string bytes(16, '\0');
  bytes[7] = 0x7f;  // a header length near 2^63
  write_file(dir.path() / "huge.safetensors", bytes);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(dir.path() / "huge.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr("exceeds the limit"));
}

// The fuzzer's entry point: the same rules over bytes in memory, the data pointing into them.
TEST(SafetensorsFileTest, FromBytesValidatesLikeOpenAndPointsIntoTheBytes) {
  const std::string good = safetensors_bytes(R"({"w":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})", "abc");
  const auto bytes = std::as_bytes(std::span(good.data(), good.size()));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::from_bytes(bytes, "in-memory");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorInfo* w = (*file)->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->data.data(), bytes.data() + bytes.size() - 3);
  const std::string bad = safetensors_bytes(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "abc");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> refused =
      SafetensorsFile::from_bytes(std::as_bytes(std::span(bad.data(), bad.size())), "in-memory");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("safetensors file in-memory, tensor 'w'"));
}

}  // namespace
}  // namespace bm::engine
