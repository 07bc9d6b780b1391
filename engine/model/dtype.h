#pragma once
// Element types of tensors in checkpoints and backend buffers. The names are the safetensors spellings.
#include <cstdint>
#include <optional>
#include <string_view>

namespace bm::engine {

enum class DType { kBool, kU8, kI8, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kI64, kU64, kF64 };

int64_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);
// "BF16" → kBF16; nullopt for a name safetensors does not define (or one we do not read, e.g. F8_E4M3).
std::optional<DType> parse_dtype(std::string_view name);

}  // namespace bm::engine
