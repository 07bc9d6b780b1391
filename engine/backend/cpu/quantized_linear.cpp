// Weight-only quantized linear (GPTQ / AWQ, 4 or 8 bits): out = x · Wᵀ with W = (q - zero) · scale dequantized
// inside the loop, F32 accumulation, and no dense copy of W anywhere.
//
// Layout (written once at load by pack_quantized): output columns in tiles of kTile = 16, and each tile's data is
// one contiguous stream — for every group, a 64-byte header (16 F16 scales, 16 zero-points, padding) followed by
// the group's packed words, 16 per word row (one per column; a word holds 32 / bits consecutive packed inputs).
// A decode step then reads each tile front to back, the access the hardware prefetcher follows best, instead of
// the checkpoint's [inputs / 8, outputs] words whose 64-byte pieces lie a whole row (kilobytes) apart.
//
// Arithmetic per output column j and group g: acc = Σ x[c] · q[c] over the group's inputs, then
// out += scale · (acc - zero · Σ x[c]). That is one multiply-add per weight (the dequantized weight itself is
// never formed) and is exact in the integer part; the group sums of x are computed once per call. The sequence of
// operations for one activation row does not depend on how many rows come with it (rows share the unpacked words,
// nothing else), so prefill and decode of the same token agree bit for bit, as the dense linear does.
//
// Vectors are 16 lanes (GCC vector extensions); the kernel is compiled for the x86-64 baseline, x86-64-v3
// (AVX2 + FMA + F16C) and x86-64-v4 (AVX-512), and the loader picks the best clone the CPU has.
//
// 4-bit words are stored with their nibbles interleaved: bits [4k, 4k + 4) hold input 2k and bits
// [16 + 4k, 20 + 4k) input 2k + 1 (k = 0..3). The F32 kernel only shifts by other constants, but the bf16 kernel
// (GemmPath::kAvx512Bf16) gets a k-pair of weights for all 16 columns from one shift and one vpternlogd:
// (word >> 4k) & 0x000F000F | 0x43004300 is the bf16 pair (128 + q[2k], 128 + q[2k + 1]), exact, and one
// vdpbf16ps multiplies it with the pair of bf16 activations — 1.5 instructions per weight instead of the F32
// kernel's 4 (shift, mask, convert, multiply-add), which is what bounds batch-1 decode (the loop is
// compute-bound on AVX-512, not memory-bound). The 128 folds into the zero-point: Σ x·(128 + q) − (zero + 128)·Σ x.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "common/check.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/simd.h"
#include "engine/backend/cpu/weights.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BM_CPU_QUANT_KERNEL __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define BM_CPU_QUANT_KERNEL
#endif

namespace bm::engine::cpu {
namespace {

constexpr int64_t kTile = 16;
constexpr int64_t kHeaderBytes = 64;  // 16 × F16 scale, 16 × u8 zero-point, 16 bytes of padding
// Activation rows that share one unpacking of the words (registers: kRowBlock × kChains accumulators of 16
// lanes plus the word). A row's arithmetic is the same whichever block it falls in.
constexpr int64_t kRowBlock = 2;
constexpr int kChains = 4;
// The bf16 kernel's row block and chains per row (tile_int4_bf16): four rows share each unpacked word.
constexpr int64_t kBf16RowBlock = 4;
constexpr int kBf16Chains = 4;
// Prefetch distance along a tile's stream. Two or three tiles are read at once per thread; a few hundred bytes
// ahead keeps the next lines in flight without evicting what is being used.
constexpr int64_t kPrefetchBytes = 512;

using F32x16 = float __attribute__((vector_size(64)));
using U32x16 = uint32_t __attribute__((vector_size(64)));
using I32x16 = int32_t __attribute__((vector_size(64)));
using U8x16 = uint8_t __attribute__((vector_size(16)));

int64_t words_per_group(const QuantizedShape& shape) {
  return shape.group_size / shape.values_per_word();
}
int64_t block_bytes(const QuantizedShape& shape) {
  return kHeaderBytes + words_per_group(shape) * kTile * 4;
}
int64_t num_tiles(const QuantizedShape& shape) {
  return (shape.rows + kTile - 1) / kTile;
}
int64_t tile_bytes(const QuantizedShape& shape) {
  return shape.num_groups() * block_bytes(shape);
}

// Where input i of a word sits: 4-bit words interleave their nibbles (above), 8-bit words keep GPTQ's order.
template <int Bits>
constexpr int value_shift(int i) {
  if constexpr (Bits == 4) return 4 * (i / 2) + 16 * (i % 2);
  return Bits * i;
}

uint32_t interleave_nibbles(uint32_t word) {
  uint32_t out = 0;
  for (int i = 0; i < 8; ++i) out |= ((word >> (4 * i)) & 0xFu) << value_shift<4>(i);
  return out;
}

// A group's 64-byte header: 16 F16 scales, then 16 zero-points.
struct GroupHeader {
  F32x16 scale;
  F32x16 zero;
};
__attribute__((always_inline)) inline GroupHeader read_group_header(const std::byte* header) {
  U8x16 zero_bits;
  std::memcpy(&zero_bits, header + 32, sizeof(zero_bits));
  const F32x8 scale_lo = load8(reinterpret_cast<const F16*>(header));
  const F32x8 scale_hi = load8(reinterpret_cast<const F16*>(header + 16));
  return {__builtin_shufflevector(scale_lo, scale_hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
          __builtin_convertvector(zero_bits, F32x16)};
}

// The tile's first num_columns lanes of `total` into one output row.
__attribute__((always_inline)) inline void store_columns(const F32x16& total, int64_t num_columns, float* out) {
  float lanes[kTile];
  std::memcpy(lanes, &total, sizeof(lanes));
  std::copy_n(lanes, num_columns, out);
}

// Rows [r0, r0 + R) of out for one tile: `xs` are the activation rows in packed order, `sums` their group sums.
template <int R, int Bits>
__attribute__((always_inline)) inline void tile_rows(const std::byte* tile, const QuantizedShape& shape,
                                                     const float* const* xs, const float* const* sums,
                                                     float* const* outs, int64_t num_columns) {
  constexpr int kPerWord = 32 / Bits;
  constexpr uint32_t kMask = (uint32_t{1} << Bits) - 1;
  const int64_t groups = shape.num_groups();
  const int64_t words = words_per_group(shape);
  const int64_t block = block_bytes(shape);
  F32x16 total[R] = {};
  for (int64_t g = 0; g < groups; ++g) {
    const std::byte* header = tile + g * block;
    const uint32_t* w = reinterpret_cast<const uint32_t*>(header + kHeaderBytes);
    // kChains independent sums per row (input i of a word goes to chain i % kChains): one chain would make every
    // multiply-add wait for the previous one (4 cycles), which capped batch-1 decode at a third of the bandwidth.
    F32x16 acc[R][kChains] = {};
    const int64_t first = g * shape.group_size;
    for (int64_t b = 0; b < words; ++b) {
      __builtin_prefetch(reinterpret_cast<const std::byte*>(w + b * kTile) + kPrefetchBytes);
      U32x16 v;
      std::memcpy(&v, w + b * kTile, sizeof(v));
      const int64_t c = first + b * kPerWord;
#pragma GCC unroll 8
      for (int i = 0; i < kPerWord; ++i) {
        const F32x16 q = __builtin_convertvector((I32x16)((v >> value_shift<Bits>(i)) & kMask), F32x16);
        for (int r = 0; r < R; ++r) acc[r][i % kChains] += xs[r][c + i] * q;
      }
    }
    const auto [scale, zero] = read_group_header(header);
    for (int r = 0; r < R; ++r) {
      const F32x16 sum = (acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3]);
      total[r] += scale * (sum - zero * sums[r][g]);
    }
  }
  for (int r = 0; r < R; ++r) store_columns(total[r], num_columns, outs[r]);
}

template <int Bits>
__attribute__((always_inline)) inline void tile_all_rows(const std::byte* tile, const QuantizedShape& shape,
                                                         const float* x, const float* sums, int64_t n, float* out,
                                                         int64_t column, int64_t num_columns) {
  const int64_t groups = shape.num_groups();
  int64_t r = 0;
  for (; r + kRowBlock <= n; r += kRowBlock) {
    const float* xs[kRowBlock];
    const float* ss[kRowBlock];
    float* os[kRowBlock];
    for (int64_t i = 0; i < kRowBlock; ++i) {
      xs[i] = x + (r + i) * shape.cols;
      ss[i] = sums + (r + i) * groups;
      os[i] = out + (r + i) * shape.rows + column;
    }
    tile_rows<kRowBlock, Bits>(tile, shape, xs, ss, os, num_columns);
  }
  for (; r < n; ++r) {
    const float* xs[1] = {x + r * shape.cols};
    const float* ss[1] = {sums + r * groups};
    float* os[1] = {out + r * shape.rows + column};
    tile_rows<1, Bits>(tile, shape, xs, ss, os, num_columns);
  }
}

BM_CPU_QUANT_KERNEL void tile_int4(const std::byte* tile, const QuantizedShape& shape, const float* x,
                                   const float* sums, int64_t n, float* out, int64_t column, int64_t num_columns) {
  tile_all_rows<4>(tile, shape, x, sums, n, out, column, num_columns);
}

BM_CPU_QUANT_KERNEL void tile_int8(const std::byte* tile, const QuantizedShape& shape, const float* x,
                                   const float* sums, int64_t n, float* out, int64_t column, int64_t num_columns) {
  tile_all_rows<8>(tile, shape, x, sums, n, out, column, num_columns);
}

// The bf16 kernel for 4-bit weights: rows [r0, r0 + R) of one tile. `xs` are bf16 activation rows in packed order
// read as k-pairs (uint32: input 2p in the low half), `sums` the group sums of those rounded activations, so that
// the 128 added to every weight cancels against (zero + 128) · sum up to F32 rounding.
template <int R>
__attribute__((target("avx512f,avx512bf16"))) void tile_rows_int4_bf16(
    const std::byte* tile, const QuantizedShape& shape, const uint32_t* const* xs, const float* const* sums,
    float* const* outs, int64_t num_columns) {
  const int64_t groups = shape.num_groups();
  const int64_t words = words_per_group(shape);
  const int64_t block = block_bytes(shape);
  const __m512i nibble_pair = _mm512_set1_epi32(0x000F000F);
  const __m512i bf16_128 = _mm512_set1_epi32(0x43004300);  // 128.0 in both halves; 128 + q needs 7 mantissa bits
  constexpr int kTernaryAOrBAndC = 0xEA;                   // (a & b) | c, on the truth tables 0xF0, 0xCC, 0xAA
  __m512 total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const std::byte* header = tile + g * block;
    const uint32_t* w = reinterpret_cast<const uint32_t*>(header + kHeaderBytes);
    __m512 acc[R][kBf16Chains];  // chain k % kBf16Chains takes k-pair k of each word
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < kBf16Chains; ++k) acc[r][k] = _mm512_setzero_ps();
    const int64_t first_pair = g * shape.group_size / 2;
    for (int64_t b = 0; b < words; ++b) {
      __builtin_prefetch(reinterpret_cast<const std::byte*>(w + b * kTile) + kPrefetchBytes);
      U32x16 v;  // a GCC vector: _mm512_srli_epi32 trips GCC 12's -Wmaybe-uninitialized in its own header
      std::memcpy(&v, w + b * kTile, sizeof(v));
      const int64_t p = first_pair + b * 4;
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m512bh q =
            (__m512bh)_mm512_ternarylogic_epi32((__m512i)(v >> (4 * k)), nibble_pair, bf16_128, kTernaryAOrBAndC);
        for (int r = 0; r < R; ++r)
          acc[r][k % kBf16Chains] =
              _mm512_dpbf16_ps(acc[r][k % kBf16Chains], q, (__m512bh)_mm512_set1_epi32(static_cast<int>(xs[r][p + k])));
      }
    }
    const auto [scale, zero] = read_group_header(header);
    const F32x16 offset_zero = zero + 128.0f;
    for (int r = 0; r < R; ++r) {
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3]));
      const F32x16 dot = (F32x16)sum - offset_zero * sums[r][g];
      total[r] = _mm512_add_ps(total[r], (__m512)(scale * dot));
    }
  }
  for (int r = 0; r < R; ++r) store_columns((F32x16)total[r], num_columns, outs[r]);
}

// Up to kBf16RowBlock activation rows share each unpacked word (prefill pays the shift and vpternlogd once per
// four rows instead of per two: 512-token prefill at 0.5B shapes, one thread, 11.3–11.7 → 9.9 s of CPU time;
// six rows with two chains each measured the same and slowed decode). Four rows' 4 chains and totals fit the 32
// vector registers. Every row's sums run in the same order whatever its block, so the results are those of the
// two-row kernel bit for bit and batch invariance holds.
using Bf16RowTile = void (*)(const std::byte*, const QuantizedShape&, const uint32_t* const*, const float* const*,
                             float* const*, int64_t);
template <int... R>
constexpr std::array<Bf16RowTile, sizeof...(R)> make_bf16_row_tiles(std::integer_sequence<int, R...>) {
  return {&tile_rows_int4_bf16<R + 1>...};
}
constexpr auto kBf16RowTiles = make_bf16_row_tiles(std::make_integer_sequence<int, kBf16RowBlock>());

__attribute__((target("avx512f,avx512bf16"))) void tile_int4_bf16(const std::byte* tile, const QuantizedShape& shape,
                                                                  const uint16_t* x, const float* sums, int64_t n,
                                                                  float* out, int64_t column, int64_t num_columns) {
  const int64_t groups = shape.num_groups();
  auto row = [&](int64_t r) { return reinterpret_cast<const uint32_t*>(x + r * shape.cols); };
  for (int64_t r = 0; r < n; r += kBf16RowBlock) {
    const int rows = static_cast<int>(std::min(kBf16RowBlock, n - r));
    const uint32_t* xs[kBf16RowBlock];
    const float* ss[kBf16RowBlock];
    float* os[kBf16RowBlock];
    for (int i = 0; i < rows; ++i) {
      xs[i] = row(r + i);
      ss[i] = sums + (r + i) * groups;
      os[i] = out + (r + i) * shape.rows + column;
    }
    kBf16RowTiles[rows - 1](tile, shape, xs, ss, os, num_columns);
  }
}

}  // namespace

int64_t quantized_layout_bytes(const QuantizedShape& shape) {
  return num_tiles(shape) * tile_bytes(shape) + (shape.permuted ? shape.cols * 4 : 0);
}

void pack_quantized(const QuantizedMatrixSource& source, std::byte* dst) {
  const QuantizedShape& shape = source.shape;
  const int64_t words = words_per_group(shape);
  const int64_t block = block_bytes(shape);
  std::memset(dst, 0, static_cast<size_t>(quantized_layout_bytes(shape)));
  for (int64_t t = 0; t < num_tiles(shape); ++t) {
    const int64_t first_column = t * kTile;
    const int64_t num_columns = std::min(kTile, shape.rows - first_column);
    for (int64_t g = 0; g < shape.num_groups(); ++g) {
      std::byte* header = dst + t * tile_bytes(shape) + g * block;
      auto* scales = reinterpret_cast<uint16_t*>(header);
      auto* zeros = reinterpret_cast<uint8_t*>(header + 32);
      auto* packed = reinterpret_cast<uint32_t*>(header + kHeaderBytes);
      for (int64_t j = 0; j < num_columns; ++j) {
        const size_t index = static_cast<size_t>(g * shape.rows + first_column + j);
        scales[j] = source.scales[index];
        zeros[j] = source.zeros[index];
        for (int64_t b = 0; b < words; ++b) {
          const uint32_t word = source.qweight[static_cast<size_t>((g * words + b) * shape.rows + first_column + j)];
          packed[b * kTile + j] = shape.bits == 4 ? interleave_nibbles(word) : word;
        }
      }
    }
  }
  if (shape.permuted) {
    std::memcpy(dst + num_tiles(shape) * tile_bytes(shape), source.perm.data(), static_cast<size_t>(shape.cols * 4));
  }
}

std::string_view quantized_kernel_isa() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  // The same order the ifunc resolver of BM_CPU_QUANT_KERNEL tries its clones in.
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2, FMA, F16C)";
#endif
  return "baseline";
}

void quantized_linear(ThreadPool& pool, GemmPath path, const float* x, int64_t n, const std::byte* packed,
                      const QuantizedShape& shape, ConstData bias, float* out) {
  BM_CHECK(shape.bits == 4 || shape.bits == 8);
  BM_CHECK(shape.group_size > 0 && shape.group_size % shape.values_per_word() == 0 &&
           shape.cols % shape.group_size == 0);
  const int64_t groups = shape.num_groups();
  // Activations in packed order (GPTQ act-order permutes the inputs) and their sums per group, once per call.
  thread_local std::vector<float> permuted;
  thread_local std::vector<float> sums;
  const float* xs = x;
  if (shape.permuted) {
    const auto* perm = reinterpret_cast<const int32_t*>(packed + num_tiles(shape) * tile_bytes(shape));
    // x has inputs() columns; a padding input (perm −1, a rank's short act-order group) reads zero.
    const int64_t inputs = shape.inputs();
    permuted.resize(static_cast<size_t>(n * shape.cols));
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < shape.cols; ++c)
        permuted[r * shape.cols + c] = perm[c] >= 0 ? x[r * inputs + perm[c]] : 0.0f;
    }
    xs = permuted.data();
  }
  // The bf16 kernel reads the activations rounded to bf16 (the sums below are then of the rounded values).
  const bool bf16 = path == GemmPath::kAvx512Bf16 && shape.bits == 4;
  thread_local std::vector<uint16_t> rounded;
  thread_local std::vector<float> widened;
  if (bf16) {
    rounded.resize(static_cast<size_t>(n * shape.cols));
    widened.resize(rounded.size());
    for (int64_t r = 0; r < n; ++r) round_row_to_bf16(xs + r * shape.cols, shape.cols, rounded.data() + r * shape.cols);
    for (size_t i = 0; i < rounded.size(); ++i) widened[i] = bf16_to_f32(rounded[i]);
  }
  const float* summed = bf16 ? widened.data() : xs;
  sums.resize(static_cast<size_t>(n * groups));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float sum = 0.0f;
      const float* row = summed + r * shape.cols + g * shape.group_size;
      for (int64_t c = 0; c < shape.group_size; ++c) sum += row[c];
      sums[r * groups + g] = sum;
    }
  }
  const float* group_sums = sums.data();
  const uint16_t* xs_bf16 = rounded.data();  // the caller's thread_local, taken here: workers have their own
  pool.parallel_for(num_tiles(shape), 1, [&](int64_t first, int64_t end) {
    for (int64_t t = first; t < end; ++t) {
      const int64_t column = t * kTile;
      const int64_t num_columns = std::min(kTile, shape.rows - column);
      const std::byte* tile = packed + t * tile_bytes(shape);
      if (bf16) {
        tile_int4_bf16(tile, shape, xs_bf16, group_sums, n, out, column, num_columns);
      } else if (shape.bits == 4) {
        tile_int4(tile, shape, xs, group_sums, n, out, column, num_columns);
      } else {
        tile_int8(tile, shape, xs, group_sums, n, out, column, num_columns);
      }
      if (bias.data == nullptr) continue;
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t j = 0; j < num_columns; ++j) out[r * shape.rows + column + j] += element_f32(bias, column + j);
      }
    }
  });
}

}  // namespace bm::engine::cpu
