#pragma once
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bm::common {

// Incremental SHA-256 (OpenSSL EVP), so a download can be hashed while it streams.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::string_view bytes);
  // Lower-case hex of the digest; the hasher is spent afterwards.
  std::string final_hex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_hex(std::string_view bytes);
// Hashes a file (or its first `limit` bytes) into `hasher`.
absl::Status hash_file_into(const std::string& path, Sha256& hasher, uint64_t limit = UINT64_MAX);
absl::StatusOr<std::string> sha256_file(const std::string& path);

}  // namespace bm::common
