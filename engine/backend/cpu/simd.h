#pragma once
// Portable 8-wide float vectors (GCC vector extensions) and bf16 conversions for the CPU kernels. The hot
// kernels are compiled twice through BM_CPU_KERNEL: for the x86-64 baseline and for x86-64-v3 (AVX2 + FMA);
// the loader picks the clone the running CPU supports (GCC function multiversioning), so the binary runs
// anywhere and uses AVX2 where it exists. Reductions are written with explicit vector accumulators because
// the compiler may not reorder float sums by itself (no -ffast-math).
#include <cstdint>
#include <cstring>

#include "engine/backend/cpu/bf16.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BM_CPU_KERNEL __attribute__((target_clones("default", "arch=x86-64-v3")))
#else
#define BM_CPU_KERNEL
#endif

namespace bm::engine::cpu {

using F32x8 = float __attribute__((vector_size(32)));
using U16x8 = uint16_t __attribute__((vector_size(16)));
using U16x16 = uint16_t __attribute__((vector_size(32)));

inline constexpr int kLanes = 8;

__attribute__((always_inline)) inline F32x8 load8(const float* p) {
  F32x8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

__attribute__((always_inline)) inline void store8(float* p, F32x8 v) {
  std::memcpy(p, &v, sizeof(v));
}

__attribute__((always_inline)) inline float reduce_add(F32x8 v) {
  // Pairwise, in a fixed order, so that every kernel sums the same way.
  return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

// e^x in eight lanes, within 2 ulp of the correctly rounded value on [-87.3, 88.3] (0 below, so e^-inf = 0;
// clamped above). The attention softmax takes one exponential per score: std::exp one lane at a time cost
// more than the score's dot product. x = n·ln 2 + r with n = round(x·log2 e) and |r| <= ln 2 / 2 (ln 2 split in
// two constants so that n·ln 2 is exact enough), e^r = 1 + r + r²·P(r) with Cephes' degree-5 minimax P, and 2^n
// put into the exponent field.
__attribute__((always_inline)) inline F32x8 exp8(F32x8 x) {
  using I32x8 = int32_t __attribute__((vector_size(32)));
  const I32x8 underflow = x < -87.3f;
  x = x < -87.3f ? F32x8{} - 87.3f : x;
  x = x > 88.3f ? F32x8{} + 88.3f : x;
  const F32x8 scaled = x * 1.44269504088896341f + 0.5f;
  F32x8 n = __builtin_convertvector(__builtin_convertvector(scaled, I32x8), F32x8);  // truncates toward zero
  n = n > scaled ? n - 1.0f : n;                                                     // so floor
  const F32x8 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F32x8 poly = r * 1.9875691500e-4f + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  const F32x8 er = poly * (r * r) + r + 1.0f;
  const I32x8 bits = (__builtin_convertvector(n, I32x8) + 127) << 23;
  F32x8 two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  const F32x8 result = er * two_n;
  return underflow ? F32x8{} : result;
}

// Eight bf16 values become the high halves of eight float32 lanes (interleaving with zeros: 3 instructions on
// AVX2, fewer than widening to 32 bits and shifting).
__attribute__((always_inline)) inline F32x8 load8(const uint16_t* bf16) {
  U16x8 halves;
  std::memcpy(&halves, bf16, sizeof(halves));
  const U16x8 zeros = {};
  const U16x16 widened = __builtin_shufflevector(zeros, halves, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  F32x8 v;
  std::memcpy(&v, &widened, sizeof(v));
  return v;
}

// Eight F16 values widened to F32 with integer operations: the magnitude's bits shifted into place and multiplied
// by 2^112 (which rebiases the exponent and renormalises subnormals exactly), the sign put back. Exact for every
// finite value (infinities and NaN, which no weight holds, come out as large finite numbers). GCC 12 lowers a
// plain _Float16 → float vector conversion to 4-lane halves even with F16C, which made F16 weights (the head of a
// GPTQ/AWQ checkpoint) stream at a fifth of the bandwidth; this is a handful of full-width integer operations.
using U32x8 = uint32_t __attribute__((vector_size(32)));
// An IEEE half as stored in a checkpoint. Its own type (not _Float16, which clang 14 — the fuzzers' compiler —
// refuses on x86, and not uint16_t, which is BF16 here) so the load overloads pick the right widening.
struct F16 {
  uint16_t bits;
};
// F16 bits held in 32-bit words (a scalar or a vector of them) widened to F32: the magnitude shifted into F32's
// place and scaled by 2^112 (which rebiases the exponent and normalises subnormals exactly), the sign put back.
template <typename Bits, typename Float>
__attribute__((always_inline)) inline Float widen_f16_bits(Bits bits) {
  const Bits sign = (bits & 0x8000u) << 16;
  const Bits magnitude = (bits & 0x7fffu) << 13;
  Float value;
  std::memcpy(&value, &magnitude, sizeof(value));
  value *= 0x1p112f;
  Bits result;
  std::memcpy(&result, &value, sizeof(result));
  result |= sign;
  std::memcpy(&value, &result, sizeof(value));
  return value;
}
__attribute__((always_inline)) inline F32x8 load8(const F16* f16) {
  U16x8 halves;
  std::memcpy(&halves, f16, sizeof(halves));
  const U16x8 zeros = {};
  const U16x16 widened = __builtin_shufflevector(halves, zeros, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  U32x8 bits;
  std::memcpy(&bits, &widened, sizeof(bits));
  return widen_f16_bits<U32x8, F32x8>(bits);
}

// One F16 widened as load8 does (exact for every finite value).
inline float f16_to_f32(uint16_t h) {
  return widen_f16_bits<uint32_t, float>(h);
}
inline float load1(const F16* f16) {
  return f16_to_f32(f16->bits);
}
inline float load1(const float* p) {
  return *p;
}
inline float load1(const uint16_t* bf16) {
  return bf16_to_f32(*bf16);
}

}  // namespace bm::engine::cpu
