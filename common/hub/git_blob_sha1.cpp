#include "common/hub/git_blob_sha1.h"

#include <openssl/evp.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace bm::common {
namespace {

struct Sha1 {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();

  Sha1() {
    BM_CHECK(ctx != nullptr);
    BM_CHECK(EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1);
  }
  ~Sha1() { EVP_MD_CTX_free(ctx); }

  void update(const void* data, size_t size) { BM_CHECK(EVP_DigestUpdate(ctx, data, size) == 1); }

  std::string final_hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    BM_CHECK(EVP_DigestFinal_ex(ctx, digest, &len) == 1);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out.push_back(kHex[digest[i] >> 4]);
      out.push_back(kHex[digest[i] & 15]);
    }
    return out;
  }
};

void update_header(Sha1& hasher, uint64_t size) {
  std::string header = absl::StrCat("blob ", size);
  hasher.update(header.data(), header.size() + 1);  // with the terminating NUL
}

}  // namespace

std::string git_blob_sha1_hex(std::string_view content) {
  Sha1 hasher;
  update_header(hasher, content.size());
  hasher.update(content.data(), content.size());
  return hasher.final_hex();
}

absl::StatusOr<std::string> git_blob_sha1_file(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path, " to hash it"));
  std::error_code ec;
  uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("cannot read the size of ", path, ": ", ec.message()));
  Sha1 hasher;
  update_header(hasher, size);
  std::vector<char> buffer(1 << 20);
  uint64_t hashed = 0;
  size_t got;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), file.get())) > 0) {
    hasher.update(buffer.data(), got);
    hashed += got;
  }
  // The header promised `size` bytes; a file that changed under us must not verify.
  if (std::ferror(file.get()) != 0 || hashed != size) {
    return absl::DataLossError(absl::StrCat("read error while hashing ", path));
  }
  return hasher.final_hex();
}

}  // namespace bm::common
