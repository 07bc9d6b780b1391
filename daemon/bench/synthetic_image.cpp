#include "daemon/bench/synthetic_image.h"

#include <algorithm>
#include <array>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace bm::daemon::bench {
namespace {

// CRC-32 of PNG chunks (ISO 3309, the table-driven form of the PNG specification's sample code).
uint32_t crc32(const std::string& bytes, size_t from) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = from; i < bytes.size(); ++i) c = table[(c ^ static_cast<uint8_t>(bytes[i])) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  size_t crc_from = out.size();  // the CRC covers the type and the data, not the length
  out.append(type, 4);
  out += data;
  put_u32(out, crc32(out, crc_from));
}

}  // namespace

SyntheticImage make_synthetic_image(int32_t width, int32_t height, uint64_t seed, uint64_t index) {
  SyntheticImage image{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
  // One generator per image, seeded from (seed, index): image i does not depend on how many came before.
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(index),
                    static_cast<uint32_t>(index >> 32)};
  std::mt19937 rng(seq);
  // A gradient whose direction and phase vary with the image (a picture-like smooth field, not flat colour), plus
  // ±24 levels of noise so that no two images share their pixels.
  std::uniform_int_distribution<int> phase(0, 255), noise(-24, 24);
  int pr = phase(rng), pg = phase(rng), pb = phase(rng);
  auto level = [](int v) { return static_cast<uint8_t>(std::clamp(v, 0, 255)); };
  for (int32_t y = 0; y < height; ++y) {
    for (int32_t x = 0; x < width; ++x) {
      int gx = width > 1 ? x * 255 / (width - 1) : 0;
      int gy = height > 1 ? y * 255 / (height - 1) : 0;
      uint8_t* p = &image.rgb[(static_cast<size_t>(y) * width + x) * 3];
      p[0] = level((gx + pr) % 256 + noise(rng));
      p[1] = level((gy + pg) % 256 + noise(rng));
      p[2] = level(((gx + gy) / 2 + pb) % 256 + noise(rng));
    }
  }
  return image;
}

std::string encode_png(const SyntheticImage& image) {
  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(image.width));
  put_u32(ihdr, static_cast<uint32_t>(image.height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, adaptive filtering, no interlace
  put_chunk(out, "IHDR", ihdr);

  // The filtered scanlines: a 0 (None) filter byte, then the row's RGB bytes.
  std::string raw;
  size_t row_bytes = static_cast<size_t>(image.width) * 3;
  raw.reserve((row_bytes + 1) * image.height);
  for (int32_t y = 0; y < image.height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(image.rgb.data()) + y * row_bytes, row_bytes);
  }
  // zlib (RFC 1950) around stored deflate blocks (RFC 1951 §3.2.4: BFINAL/BTYPE=00, LEN, NLEN, ≤ 65535 bytes).
  std::string z("\x78\x01", 2);  // deflate, 32 KiB window, no dictionary, FCHECK making 0x7801 a multiple of 31
  size_t pos = 0;
  do {
    size_t n = std::min<size_t>(65535, raw.size() - pos);
    bool last = pos + n == raw.size();
    z.push_back(last ? '\x01' : '\x00');
    z.push_back(static_cast<char>(n & 0xFF));
    z.push_back(static_cast<char>(n >> 8));
    z.push_back(static_cast<char>(~n & 0xFF));
    z.push_back(static_cast<char>((~n >> 8) & 0xFF));
    z.append(raw, pos, n);
    pos += n;
  } while (pos < raw.size());
  // Adler-32 of the uncompressed data; 5552 is zlib's NMAX, the longest run before the sums can overflow.
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < raw.size();) {
    size_t end = std::min(raw.size(), i + 5552);
    for (; i < end; ++i) {
      a += static_cast<uint8_t>(raw[i]);
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  put_u32(z, (b << 16) | a);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

absl::Status check_image_workload(int32_t images_per_prompt, int32_t width, int32_t height) {
  if (images_per_prompt < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("--images-per-prompt must not be negative, not ", images_per_prompt));
  if (images_per_prompt == 0) return absl::OkStatus();
  if (width < kMinImageSide || height < kMinImageSide || width > kMaxImageSide || height > kMaxImageSide)
    return absl::InvalidArgumentError(absl::StrCat("--image-size ", width, "x", height, " is outside ", kMinImageSide,
                                                   "..", kMaxImageSide, " pixels per side"));
  return absl::OkStatus();
}

std::string png_data_url(const std::string& png) {
  return "data:image/png;base64," + absl::Base64Escape(png);
}

}  // namespace bm::daemon::bench
