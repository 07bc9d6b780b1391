// out = x · wᵀ + bias over weights packed once at load. The layout puts 16 output rows side by side and their
// weights for two consecutive k next to each other: packed[b][p][c][j] = w[16 b + c][2 p + j], so one 64-byte
// load is a k-pair for 16 outputs — what vdpbf16ps takes, and for the F32 paths two shifts/masks widen it into
// the even and odd k. Each thread owns panels of 64 output rows (partitioned over the outputs, so every core
// streams its own weights once per call), and within a panel sweeps tiles of activation rows; the panel's weights
// stay in L2 while the rows stream by. Every output is one accumulator advanced in k order, whatever the batch:
// a row's result does not depend on the rows beside it (prefill and decode of one token agree bit for bit).
//
// F16 weights (the float tensors of GPTQ/AWQ checkpoints: their lm_head, or the tied embedding table, is the
// largest single read of a quantized decode step) keep the same blocks and pairs but put the two k of a pair in
// separate halves: packed[b][p][j][c] = w[16 b + c][2 p + j]. A 64-byte load then holds k = 2p for 16 outputs in
// its low 32 bytes and k = 2p + 1 in its high 32 bytes, each one vcvtph2ps away from F32 lanes (exact), where the
// pair order would need a shuffle per half. F16 weights always run with F32 activations (there is no F16 dot
// product on these CPUs), so the avx512-bf16 path multiplies them as the avx512 path does.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/weights.h"

namespace bm::engine::cpu {
namespace {

constexpr int64_t kBlock = 16;  // output rows per packed block
constexpr int kMaxBlocks = 4;   // blocks per panel (64 outputs)

struct TileArgs {
  const void* x;         // F32 [rows, k], or bf16 pairs as uint32 [rows, k / 2]
  int64_t ldx;           // elements (F32) or pairs (bf16) between activation rows
  int64_t pairs;         // k / 2
  const uint16_t* w;     // the first block of the panel
  int64_t block_stride;  // uint16 elements between blocks (= 16 k)
  float* out;            // out[0, first output of the panel]
  int64_t ldo;
};

using TileFn = void (*)(const TileArgs&);

// raw << 16 in each 32-bit lane. Written with a vector extension: GCC 12's _mm512_slli_epi32 trips a false
// -Wmaybe-uninitialized inside its own header.
__attribute__((target("avx512f"), always_inline)) inline __m512i shift_left_16(__m512i raw) {
  using U32x16 = uint32_t __attribute__((vector_size(64)));
  return reinterpret_cast<__m512i>(reinterpret_cast<U32x16>(raw) << 16);
}

// How each layout gives the k-pair (2p, 2p + 1) of a block's 16 outputs as F32 lanes; `w` points at the pair's 32
// elements. Both widenings are exact, so every F32 path runs the same chain on the same values.
struct Bf16Pairs {  // packed[b][p][c][j]: one 32-bit lane is output c's pair
  static float even(const uint16_t* w, int c) { return bf16_to_f32(w[2 * c]); }
  static float odd(const uint16_t* w, int c) { return bf16_to_f32(w[2 * c + 1]); }
  // Outputs 8h … 8h + 7: bf16 → f32 is a shift (even) or a mask (odd) of each lane.
  __attribute__((target("avx2,fma,f16c"), always_inline)) static void widen8(const uint16_t* w, int h, __m256& even,
                                                                            __m256& odd) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + h * 16));
    even = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
    odd = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  __attribute__((target("avx512f"), always_inline)) static void widen16(const uint16_t* w, __m512& even, __m512& odd) {
    const __m512i raw = _mm512_loadu_si512(w);
    even = _mm512_castsi512_ps(shift_left_16(raw));
    odd = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
};

struct F16Halves {  // packed[b][p][j][c]: the 16 even k, then the 16 odd k
  static float even(const uint16_t* w, int c) { return f16_to_f32(w[c]); }
  static float odd(const uint16_t* w, int c) { return f16_to_f32(w[kBlock + c]); }
  __attribute__((target("avx2,fma,f16c"), always_inline)) static void widen8(const uint16_t* w, int h, __m256& even,
                                                                            __m256& odd) {
    even = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + h * 8)));
    odd = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + kBlock + h * 8)));
  }
  // The masked conversion with every lane on: GCC 12's _mm512_cvtph_ps passes an undefined vector it then reports
  // as maybe-uninitialized.
  __attribute__((target("avx512f"), always_inline)) static void widen16(const uint16_t* w, __m512& even, __m512& odd) {
    even = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
    odd = _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kBlock)));
  }
};

// Pure C++, any CPU: the same fused multiply-add chain, so it is bit-identical to the vector F32 paths.
template <class Layout>
struct ScalarKernel {
  static constexpr int kMaxRows = 1;
  template <int MR, int NR>
  static void tile(const TileArgs& a) {
    const float* x = static_cast<const float*>(a.x);
    for (int b = 0; b < NR; ++b) {
      const uint16_t* w = a.w + b * a.block_stride;
      for (int c = 0; c < kBlock; ++c) {
        float acc = 0;
        for (int64_t p = 0; p < a.pairs; ++p) {
          acc = std::fma(x[2 * p], Layout::even(w + p * 32, c), acc);
          acc = std::fma(x[2 * p + 1], Layout::odd(w + p * 32, c), acc);
        }
        a.out[b * kBlock + c] = acc;
      }
    }
  }
};

template <class Layout>
struct Avx2Kernel {
  static constexpr int kMaxRows = 3;
  template <int MR, int NR>
  __attribute__((target("avx2,fma,f16c"))) static void tile(const TileArgs& a) {
    const float* x = static_cast<const float*>(a.x);
    __m256 acc[MR][NR][2];
    for (int i = 0; i < MR; ++i)
      for (int b = 0; b < NR; ++b) acc[i][b][0] = acc[i][b][1] = _mm256_setzero_ps();
    for (int64_t p = 0; p < a.pairs; ++p) {
      __m256 even[NR][2], odd[NR][2];
      for (int b = 0; b < NR; ++b) {
        for (int h = 0; h < 2; ++h) Layout::widen8(a.w + b * a.block_stride + p * 32, h, even[b][h], odd[b][h]);
      }
      for (int i = 0; i < MR; ++i) {
        const __m256 x0 = _mm256_broadcast_ss(x + i * a.ldx + 2 * p);
        const __m256 x1 = _mm256_broadcast_ss(x + i * a.ldx + 2 * p + 1);
        for (int b = 0; b < NR; ++b) {
          for (int h = 0; h < 2; ++h) {
            acc[i][b][h] = _mm256_fmadd_ps(x0, even[b][h], acc[i][b][h]);
            acc[i][b][h] = _mm256_fmadd_ps(x1, odd[b][h], acc[i][b][h]);
          }
        }
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int b = 0; b < NR; ++b)
        for (int h = 0; h < 2; ++h) _mm256_storeu_ps(a.out + i * a.ldo + b * kBlock + h * 8, acc[i][b][h]);
  }
};

template <class Layout>
struct Avx512Kernel {
  static constexpr int kMaxRows = 4;
  template <int MR, int NR>
  __attribute__((target("avx512f"))) static void tile(const TileArgs& a) {
    const float* x = static_cast<const float*>(a.x);
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int b = 0; b < NR; ++b) acc[i][b] = _mm512_setzero_ps();
    for (int64_t p = 0; p < a.pairs; ++p) {
      __m512 even[NR], odd[NR];
      for (int b = 0; b < NR; ++b) Layout::widen16(a.w + b * a.block_stride + p * 32, even[b], odd[b]);
      for (int i = 0; i < MR; ++i) {
        const __m512 x0 = _mm512_set1_ps(x[i * a.ldx + 2 * p]);
        const __m512 x1 = _mm512_set1_ps(x[i * a.ldx + 2 * p + 1]);
        for (int b = 0; b < NR; ++b) {
          acc[i][b] = _mm512_fmadd_ps(x0, even[b], acc[i][b]);
          acc[i][b] = _mm512_fmadd_ps(x1, odd[b], acc[i][b]);
        }
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int b = 0; b < NR; ++b) _mm512_storeu_ps(a.out + i * a.ldo + b * kBlock, acc[i][b]);
  }
};

struct Avx512Bf16Kernel {
  static constexpr int kMaxRows = 6;
  template <int MR, int NR>
  __attribute__((target("avx512f,avx512bf16"))) static void tile(const TileArgs& a) {
    const uint32_t* x = static_cast<const uint32_t*>(a.x);
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int b = 0; b < NR; ++b) acc[i][b] = _mm512_setzero_ps();
    for (int64_t p = 0; p < a.pairs; ++p) {
      __m512bh w[NR];
      for (int b = 0; b < NR; ++b) w[b] = (__m512bh)_mm512_loadu_si512(a.w + b * a.block_stride + p * 32);
      for (int i = 0; i < MR; ++i) {
        const __m512bh xi = (__m512bh)_mm512_set1_epi32(static_cast<int>(x[i * a.ldx + p]));
        for (int b = 0; b < NR; ++b) acc[i][b] = _mm512_dpbf16_ps(acc[i][b], xi, w[b]);
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int b = 0; b < NR; ++b) _mm512_storeu_ps(a.out + i * a.ldo + b * kBlock, acc[i][b]);
  }
};

// table[(rows - 1) * kMaxBlocks + blocks - 1] runs a tile of `rows` activation rows and `blocks` blocks.
template <class Kernel, int... I>
constexpr std::array<TileFn, sizeof...(I)> make_table(std::integer_sequence<int, I...>) {
  return {&Kernel::template tile<I / kMaxBlocks + 1, I % kMaxBlocks + 1>...};
}
template <class Kernel>
constexpr auto kTable = make_table<Kernel>(std::make_integer_sequence<int, Kernel::kMaxRows * kMaxBlocks>());

struct PathTable {
  const TileFn* tiles;
  int max_rows;
};

PathTable table_for(GemmPath path, DType weights) {
  if (weights == DType::kF16) {
    switch (path) {
      case GemmPath::kAvx512Bf16:
      case GemmPath::kAvx512:
        return {kTable<Avx512Kernel<F16Halves>>.data(), Avx512Kernel<F16Halves>::kMaxRows};
      case GemmPath::kAvx2:
        return {kTable<Avx2Kernel<F16Halves>>.data(), Avx2Kernel<F16Halves>::kMaxRows};
      case GemmPath::kAuto:
      case GemmPath::kScalar:
        break;
    }
    return {kTable<ScalarKernel<F16Halves>>.data(), ScalarKernel<F16Halves>::kMaxRows};
  }
  BM_CHECK(weights == DType::kBF16);
  switch (path) {
    case GemmPath::kAvx512Bf16:
      return {kTable<Avx512Bf16Kernel>.data(), Avx512Bf16Kernel::kMaxRows};
    case GemmPath::kAvx512:
      return {kTable<Avx512Kernel<Bf16Pairs>>.data(), Avx512Kernel<Bf16Pairs>::kMaxRows};
    case GemmPath::kAvx2:
      return {kTable<Avx2Kernel<Bf16Pairs>>.data(), Avx2Kernel<Bf16Pairs>::kMaxRows};
    case GemmPath::kAuto:
    case GemmPath::kScalar:
      break;
  }
  return {kTable<ScalarKernel<Bf16Pairs>>.data(), ScalarKernel<Bf16Pairs>::kMaxRows};
}

}  // namespace

// The scalar tail rounds as the vector body does (nearest even).
__attribute__((target("avx512f,avx512bf16"))) void round_row_to_bf16(const float* x, int64_t k, uint16_t* out) {
  int64_t c = 0;
  for (; c + 32 <= k; c += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c));
    _mm512_storeu_si512(out + c, (__m512i)v);
  }
  for (; c < k; ++c) out[c] = f32_to_bf16(x[c]);
}

bool packable_linear_weight(DType dtype, int64_t m, int64_t k) {
  return (dtype == DType::kBF16 || dtype == DType::kF16) && m > 0 && k > 0 && m % kBlock == 0 && k % 2 == 0;
}

// Where w[r][2 p + j] lives in the packed layout of `dtype` (the file's header comment).
inline int64_t packed_index(DType dtype, int64_t pairs, int64_t r, int64_t p, int64_t j) {
  const int64_t b = r / kBlock, c = r % kBlock, pair_base = (b * pairs + p) * 2 * kBlock;
  return dtype == DType::kF16 ? pair_base + j * kBlock + c : pair_base + c * 2 + j;
}

void pack_linear_weight(DType dtype, const uint16_t* w, int64_t m, int64_t k, uint16_t* packed) {
  BM_CHECK(packable_linear_weight(dtype, m, k));
  const int64_t pairs = k / 2;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t p = 0; p < pairs; ++p) {
      packed[packed_index(dtype, pairs, r, p, 0)] = w[r * k + 2 * p];
      packed[packed_index(dtype, pairs, r, p, 1)] = w[r * k + 2 * p + 1];
    }
  }
}

void packed_embedding(ThreadPool& pool, DType dtype, const uint16_t* packed, int64_t vocab, int64_t hidden,
                      const int32_t* ids, int64_t n, float* out) {
  BM_CHECK(packable_linear_weight(dtype, vocab, hidden));
  const int64_t pairs = hidden / 2;
  pool.parallel_for(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      BM_CHECK(ids[i] >= 0 && ids[i] < vocab);
      for (int64_t col = 0; col < hidden; ++col) {
        const uint16_t bits = packed[packed_index(dtype, pairs, ids[i], col / 2, col % 2)];
        out[i * hidden + col] = dtype == DType::kF16 ? f16_to_f32(bits) : bf16_to_f32(bits);
      }
    }
  });
}

void packed_linear(ThreadPool& pool, GemmPath path, const float* x, int64_t n, int64_t k, DType dtype,
                   const uint16_t* packed, int64_t m, ConstData bias, float* out) {
  BM_CHECK(packable_linear_weight(dtype, m, k) && path != GemmPath::kAuto);
  const PathTable table = table_for(path, dtype);
  const void* activations = x;
  int64_t ldx = k;
  thread_local std::vector<uint16_t> rounded;
  if (path == GemmPath::kAvx512Bf16 && dtype == DType::kBF16) {
    rounded.resize(static_cast<size_t>(n * k));
    uint16_t* dst = rounded.data();
    pool.parallel_for(n, 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) round_row_to_bf16(x + i * k, k, dst + i * k);
    });
    activations = dst;
    ldx = k / 2;
  }
  const int64_t num_blocks = m / kBlock;
  const int64_t num_panels = (num_blocks + kMaxBlocks - 1) / kMaxBlocks;
  const int64_t row_step = table.max_rows;
  pool.parallel_for(num_panels, 1, [&](int64_t first_panel, int64_t end_panel) {
    for (int64_t panel = first_panel; panel < end_panel; ++panel) {
      const int64_t first_block = panel * kMaxBlocks;
      const int blocks = static_cast<int>(std::min<int64_t>(kMaxBlocks, num_blocks - first_block));
      const int64_t col = first_block * kBlock;
      for (int64_t i = 0; i < n; i += row_step) {
        const int rows = static_cast<int>(std::min(row_step, n - i));
        const TileArgs args{
            static_cast<const std::byte*>(activations) + i * ldx * 4 /* bytes of an F32 or of a bf16 pair */,
            ldx,
            k / 2,
            packed + first_block * kBlock * k,
            kBlock * k,
            out + i * m + col,
            m};
        table.tiles[(rows - 1) * kMaxBlocks + blocks - 1](args);
      }
      if (bias.data == nullptr) continue;
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t c = col; c < col + blocks * kBlock; ++c) out[i * m + c] += element_f32(bias, c);
      }
    }
  });
}

}  // namespace bm::engine::cpu
