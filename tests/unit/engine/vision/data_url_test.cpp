#include "engine/vision/data_url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/vision/image_decoder.h"

namespace bm::engine::vision {
namespace {

using ::testing::HasSubstr;

TEST(DataUrlTest, DecodesBase64Payloads) {
  auto url = parse_data_url("data:image/PNG;base64,aGVsbG8=", 100);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->media_type, "image/png");
  EXPECT_EQ(url->bytes, "hello");
  auto bare = parse_data_url("DATA:;base64,aGk=", 100);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->media_type, "");
  EXPECT_EQ(bare->bytes, "hi");
  auto params = parse_data_url("data:image/jpeg;name=x.jpg;base64,aGk=", 100);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->media_type, "image/jpeg");
}

TEST(DataUrlTest, TheMediaTypeDoesNotDecideTheFormat) {
  // 1x1 PNG labeled as JPEG: the decoder sniffs bytes.
  auto url = parse_data_url(
      "data:image/jpeg;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/"
      "pLvAAAAAElFTkSuQmCC",
      1000);
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(sniff_image_format(url->bytes), ImageFormat::kPng);
  auto image = decode_image(url->bytes);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 1);
}

TEST(DataUrlTest, RefusesWhatIsNotABase64DataUrl) {
  EXPECT_THAT(parse_data_url("https://example.com/a.png", 100).status().message(), HasSubstr("not a data: URL"));
  EXPECT_THAT(parse_data_url("data:image/png;base64", 100).status().message(), HasSubstr("no ','"));
  EXPECT_THAT(parse_data_url("data:image/png,abc", 100).status().message(), HasSubstr("not base64-encoded"));
  EXPECT_THAT(parse_data_url("data:image/png;base64,a$b=", 100).status().message(), HasSubstr("not valid base64"));
  EXPECT_THAT(parse_data_url("data:image/png;base64,", 100).status().message(), HasSubstr("empty"));
  EXPECT_THAT(parse_data_url("data:image/p\"ng;base64,aGk=", 100).status().message(), HasSubstr("media type"));
}

TEST(DataUrlTest, RefusesOversizedPayloadsBeforeDecoding) {
  const std::string big = "data:image/png;base64," + std::string(4000, 'A');
  EXPECT_THAT(parse_data_url(big, 1000).status().message(), HasSubstr("over the limit of 1000 bytes"));
  EXPECT_TRUE(parse_data_url(big, 3000).ok());
  EXPECT_THAT(parse_data_url("data:;base64,aGVsbG8=", 4).status().message(), HasSubstr("over the limit"));
}

}  // namespace
}  // namespace bm::engine::vision
