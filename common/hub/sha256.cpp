#include "common/hub/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace bm::common {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  BM_CHECK(impl_->ctx != nullptr);
  BM_CHECK(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1);
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(impl_->ctx);
}

void Sha256::update(std::string_view bytes) {
  BM_CHECK(EVP_DigestUpdate(impl_->ctx, bytes.data(), bytes.size()) == 1);
}

std::string Sha256::final_hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  BM_CHECK(EVP_DigestFinal_ex(impl_->ctx, digest, &len) == 1);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 hasher;
  hasher.update(bytes);
  return hasher.final_hex();
}

absl::Status hash_file_into(const std::string& path, Sha256& hasher, uint64_t limit) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", path, " to hash it"));
  std::vector<char> buffer(1 << 20);
  uint64_t remaining = limit;
  while (remaining > 0) {
    size_t want = remaining < buffer.size() ? static_cast<size_t>(remaining) : buffer.size();
    size_t got = std::fread(buffer.data(), 1, want, file);
    if (got == 0) break;
    hasher.update(std::string_view(buffer.data(), got));
    remaining -= got;
  }
  bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return absl::DataLossError(absl::StrCat("read error while hashing ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::string> sha256_file(const std::string& path) {
  Sha256 hasher;
  absl::Status status = hash_file_into(path, hasher);
  if (!status.ok()) return status;
  return hasher.final_hex();
}

}  // namespace bm::common
