// Weight-only quantized linear (GPTQ 4/8-bit incl. act-order, AWQ 4-bit): out = x · Wᵀ (+ bias) with
// W[j, c] = (q - zero) · scale dequantized inside the kernels (quantized_matrix.h says what the numbers mean).
//
// Device layout (written once at load by pack_quantized_for_device, from the neutral host form):
//   words  [tiles][word_rows][4] u32   tile t = output columns 4t..4t+3; word row w = packed inputs
//                                      w·vpw .. w·vpw+vpw-1 (vpw = 32 / bits), GPTQ's bit order within a word.
//                                      One uint4 = the same inputs for the tile's 4 columns, so a warp reading
//                                      consecutive word rows of a tile issues coalesced 16-byte loads (512 B).
//   params [tiles][groups][4] u32      F16 scale bits | zero-point << 16, one uint4 per (tile, group): beside the
//                                      words in the same buffer, 1/16 of the int4 g128 bytes.
//   perm   [cols] i32                  act-order only: packed input i is activation column perm[i] (−1: a
//                                      padding input reading zero, a tensor-parallel rank's short group); the
//                                      activations are permuted once per call (launch_quantized_permute).
// Columns past `rows` (the last tile's padding) hold zero words and zero params, i.e. weight 0.
//
// Dequantization: q - zero is formed exactly with the magic-number trick — the float whose bits are
// 0x4B000000 | q is 2^23 + q, so subtracting (2^23 + zero) gives the integer difference with one FADD and no
// int→float conversion — and then multiplied by the F32 scale, the same F32 product the CPU reference forms.
//
// Two kernels:
// - GEMV (1..kQuantGemvMaxRows activation rows, decode): one block per tile, its 256 threads split the word
//   rows, F32 activations and F32 math (Σ x·(q − z) per word, then × scale), warp shuffles and shared memory
//   reduce. Memory-bound: each weight byte is read once, activations come from L1/L2.
// - GEMM (more rows: batched decode, prefill): 64 activation rows × 128 output columns × 64 inputs per step;
//   the weights are dequantized into shared memory as BF16 ((q − z)·scale rounded once, as Marlin does in
//   F16/BF16) and the activations rounded to BF16 (as the dense BF16 linear does), then WMMA m16n16k16 bf16
//   tensor-core MMAs with F32 accumulators. When the output tiles alone cannot fill the GPU the inputs are split
//   over blockIdx.z and a second kernel sums the partial results in a fixed order (deterministic, no atomics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int64_t kSectionAlignment = 256;
constexpr uint32_t kMagicBits = 0x4B000000u;  // the F32 2^23: its bits | q (q < 2^23) is the float 2^23 + q

constexpr int kGemvThreads = 256;
constexpr int kGemvUnroll = 4;  // word rows in flight per thread: loads issued before the first is used

constexpr int kGemmThreads = 256;  // 8 warps, each 16 output columns × 64 activation rows
constexpr int kGemmRows = 64;
constexpr int kGemmCols = 128;
constexpr int kGemmK = 64;
constexpr int kGemmTiles = kGemmCols / kQuantTileColumns;
// +8 BF16 per row keeps every row 16-byte aligned for WMMA loads and moves consecutive rows to other banks.
constexpr int kAStride = kGemmK + 8;
constexpr int kBStride = kGemmK + 8;
constexpr int kCStride = kGemmCols + 4;
constexpr int kASmemBytes = kGemmRows * kAStride * 2;
constexpr int kBSmemBytes = kGemmCols * kBStride * 2;
constexpr int kCSmemBytes = kGemmRows * kCStride * 4;
constexpr int kGemmSmemBytes = kASmemBytes + kBSmemBytes > kCSmemBytes ? kASmemBytes + kBSmemBytes : kCSmemBytes;
constexpr int kMaxSplits = 16;

int64_t align_up(int64_t bytes) {
  return (bytes + kSectionAlignment - 1) / kSectionAlignment * kSectionAlignment;
}

__device__ __forceinline__ float f16_bits_to_f32(uint32_t bits) {
  __half_raw raw;
  raw.x = static_cast<unsigned short>(bits & 0xffffu);
  return __half2float(__half(raw));
}

// Scale and magic offset (2^23 + zero) of the 4 columns of one params uint4.
__device__ __forceinline__ void unpack_params(const uint4& param, float (&scale)[4], float (&offset)[4]) {
  const uint32_t p[4] = {param.x, param.y, param.z, param.w};
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    scale[c] = f16_bits_to_f32(p[c]);
    // 2^23 + zero by the same magic as the weights (zero < 2^16): two integer ops instead of I2F + FADD.
    offset[c] = __uint_as_float(kMagicBits | (p[c] >> 16));
  }
}

// q - zero of value i of a word, exactly (see the file comment).
template <int Bits>
__device__ __forceinline__ float centered(uint32_t word, int i, float offset) {
  if constexpr (Bits == 8) {
    // One PRMT: byte i of the word under the magic's bytes 0x00 0x00 0x4B.
    return __uint_as_float(__byte_perm(word, kMagicBits, 0x7650u | static_cast<uint32_t>(i))) - offset;
  } else {
    constexpr uint32_t kMask = (1u << Bits) - 1;
    return __uint_as_float(kMagicBits | ((word >> (Bits * i)) & kMask)) - offset;
  }
}

// Two floats as BF16 (round to nearest even) in one u32, the first in the low half: one cvt.rn.bf16x2.f32.
__device__ __forceinline__ uint32_t bf16x2_bits(float first, float second) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(first, second);
  uint32_t bits;
  memcpy(&bits, &pair, sizeof bits);
  return bits;
}

// The group of a word row: a shift when the words per group are a power of two (group sizes 32/64/128), else a
// 32-bit division — never the 64-bit division `w · vpw / group_size` would cost on every word row.
struct GroupIndex {
  int32_t shift = -1;
  uint32_t words_per_group = 1;
};

__device__ __forceinline__ uint32_t group_of(int64_t w, const GroupIndex& groups) {
  const uint32_t word_row = static_cast<uint32_t>(w);
  return groups.shift >= 0 ? word_row >> groups.shift : word_row / groups.words_per_group;
}

// x has `inputs` columns, out `cols` (packed order); a padding input (perm −1) reads zero.
__global__ void permute_kernel(const float* x, int64_t n, int64_t inputs, int64_t cols, const int32_t* perm,
                               float* out) {
  const int64_t count = n * cols;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / cols;
    const int32_t column = perm[e % cols];
    out[e] = column >= 0 ? x[r * inputs + column] : 0.0f;
  }
}

template <int Bits>
__global__ void dequantize_kernel(const uint4* words, const uint4* params, const int32_t* perm, int64_t num_tiles,
                                  int64_t word_rows, int64_t num_groups, GroupIndex groups, int64_t rows, int64_t cols,
                                  float* dense) {
  constexpr int kPerWord = 32 / Bits;
  const int64_t count = num_tiles * word_rows;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t tile = e / word_rows;
    const int64_t w = e % word_rows;
    const uint4 packed = words[e];
    float scale[4], offset[4];
    unpack_params(params[tile * num_groups + group_of(w, groups)], scale, offset);
    const uint32_t word[4] = {packed.x, packed.y, packed.z, packed.w};
    for (int c = 0; c < 4; ++c) {
      const int64_t j = tile * kQuantTileColumns + c;
      if (j >= rows) break;
      for (int i = 0; i < kPerWord; ++i) {
        const int64_t packed_input = w * kPerWord + i;
        const int64_t column = perm != nullptr ? perm[packed_input] : packed_input;
        if (column < 0) continue;  // padding
        dense[j * cols + column] = centered<Bits>(word[c], i, offset[c]) * scale[c];
      }
    }
  }
}

// One block per tile of 4 output columns; R >= n activation rows (n <= R), x in packed order.
template <int Bits, int R>
__global__ void __launch_bounds__(kGemvThreads)
    gemv_kernel(const float* __restrict__ x, int32_t n, const uint4* __restrict__ words,
                const uint4* __restrict__ params, int64_t word_rows, int64_t num_groups, GroupIndex groups,
                int64_t rows, const void* bias, bool bias_bf16, float* __restrict__ out) {
  constexpr int kPerWord = 32 / Bits;
  const int64_t tile = blockIdx.x;
  const int64_t cols = word_rows * kPerWord;
  const uint4* tile_words = words + tile * word_rows;
  const uint4* tile_params = params + tile * num_groups;
  float acc[R][4];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;
  }
  for (int64_t base = threadIdx.x; base < word_rows; base += int64_t{kGemvThreads} * kGemvUnroll) {
    // Every load of the unrolled step first (the words from HBM, their params mostly from L1/L2), then the math.
    uint4 packed[kGemvUnroll];
    uint4 param[kGemvUnroll];
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int64_t w = base + int64_t{u} * kGemvThreads;
      const bool inside = w < word_rows;
      packed[u] = inside ? tile_words[w] : make_uint4(0, 0, 0, 0);
      param[u] = inside ? tile_params[group_of(w, groups)] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int64_t w = base + int64_t{u} * kGemvThreads;
      if (w >= word_rows) break;
      float scale[4], offset[4];
      unpack_params(param[u], scale, offset);
      const uint32_t word[4] = {packed[u].x, packed[u].y, packed[u].z, packed[u].w};
      float d[4][kPerWord];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
#pragma unroll
        for (int i = 0; i < kPerWord; ++i) d[c][i] = centered<Bits>(word[c], i, offset[c]);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= n) break;
        const float* xr = x + r * cols + w * kPerWord;
        float xv[kPerWord];
#pragma unroll
        for (int i = 0; i < kPerWord; i += 4) {
          const float4 v = *reinterpret_cast<const float4*>(xr + i);
          xv[i] = v.x, xv[i + 1] = v.y, xv[i + 2] = v.z, xv[i + 3] = v.w;
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          float s = 0.0f;
#pragma unroll
          for (int i = 0; i < kPerWord; ++i) s += xv[i] * d[c][i];
          acc[r][c] += scale[c] * s;
        }
      }
    }
  }
  __shared__ float partial[kGemvThreads / 32][R * 4];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float v = warp_sum(acc[r][c]);
      if (lane == 0) partial[warp][r * 4 + c] = v;
    }
  }
  __syncthreads();
  if (threadIdx.x < R * 4) {
    const int r = threadIdx.x / 4;
    const int64_t j = tile * kQuantTileColumns + threadIdx.x % 4;
    if (r < n && j < rows) {
      float sum = 0.0f;
      for (int i = 0; i < kGemvThreads / 32; ++i) sum += partial[i][threadIdx.x];
      if (bias != nullptr) sum += load_weight(bias, bias_bf16, j);
      out[r * rows + j] = sum;
    }
  }
}

// Output block (blockIdx.x: 128 columns, blockIdx.y: 64 activation rows), input steps
// [blockIdx.z · steps_per_split, …). One split writes out (+ bias); several write partials[split][n][rows].
template <int Bits>
__global__ void __launch_bounds__(kGemmThreads)
    gemm_kernel(const float* __restrict__ x, int32_t n, const uint4* __restrict__ words,
                const uint4* __restrict__ params, int64_t num_tiles, int64_t word_rows, int64_t num_groups,
                GroupIndex groups, int64_t rows, int32_t steps_per_split, const void* bias, bool bias_bf16,
                float* __restrict__ out, float* __restrict__ partials) {
  constexpr int kPerWord = 32 / Bits;
  constexpr int kWordRowsPerStep = kGemmK / kPerWord;
  __align__(128) __shared__ unsigned char smem[kGemmSmemBytes];
  auto* a_s = reinterpret_cast<__nv_bfloat16*>(smem);
  auto* b_s = reinterpret_cast<__nv_bfloat16*>(smem + kASmemBytes);
  auto* c_s = reinterpret_cast<float*>(smem);  // after the last step
  const int64_t cols = word_rows * kPerWord;
  const int64_t row0 = int64_t{blockIdx.y} * kGemmRows;
  const int64_t tile0 = int64_t{blockIdx.x} * kGemmTiles;
  const int64_t total_steps = (cols + kGemmK - 1) / kGemmK;
  const int64_t step_begin = int64_t{blockIdx.z} * steps_per_split;
  const int64_t step_end = total_steps < step_begin + steps_per_split ? total_steps : step_begin + steps_per_split;
  const int warp = threadIdx.x / 32;
  // Fragments of 16 activation rows that hold any real row; the rest are never multiplied (warp-uniform).
  const int64_t real_fragments = (n - row0 + 15) / 16;
  const int row_fragments = real_fragments < 4 ? static_cast<int>(real_fragments) : 4;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4];
#pragma unroll
  for (int f = 0; f < 4; ++f) wmma::fill_fragment(acc[f], 0.0f);
  for (int64_t step = step_begin; step < step_end; ++step) {
    const int64_t k0 = step * kGemmK;
    // Activations: 64 rows × 64 inputs, F32 → BF16 (zeros past n and past cols; cols is a multiple of 4).
    for (int e = threadIdx.x; e < kGemmRows * kGemmK / 4; e += kGemmThreads) {
      const int r = e / (kGemmK / 4);
      const int c = e % (kGemmK / 4) * 4;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (row0 + r < n && k0 + c < cols) v = *reinterpret_cast<const float4*>(x + (row0 + r) * cols + k0 + c);
      *reinterpret_cast<uint2*>(a_s + r * kAStride + c) = make_uint2(bf16x2_bits(v.x, v.y), bf16x2_bits(v.z, v.w));
    }
    // Weights: 32 tiles × the step's word rows; consecutive threads read consecutive word rows of a tile.
    for (int e = threadIdx.x; e < kGemmTiles * kWordRowsPerStep; e += kGemmThreads) {
      const int t = e / kWordRowsPerStep;
      const int wr = e % kWordRowsPerStep;
      const int64_t tile = tile0 + t;
      const int64_t w = k0 / kPerWord + wr;
      uint4 packed = make_uint4(0, 0, 0, 0);
      uint4 param = make_uint4(0, 0, 0, 0);  // scale 0: weight 0 outside the matrix
      if (tile < num_tiles && w < word_rows) {
        packed = words[tile * word_rows + w];
        param = params[tile * num_groups + group_of(w, groups)];
      }
      float scale[4], offset[4];
      unpack_params(param, scale, offset);
      const uint32_t word[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        // kPerWord BF16 values, converted in pairs and stored at once (16 or 8 bytes, aligned: kBStride · 2 and
        // kPerWord · 2 are multiples of 16 / 8).
        uint32_t pairs[kPerWord / 2];
#pragma unroll
        for (int i = 0; i < kPerWord; i += 2) {
          pairs[i / 2] = bf16x2_bits(centered<Bits>(word[c], i, offset[c]) * scale[c],
                                     centered<Bits>(word[c], i + 1, offset[c]) * scale[c]);
        }
        __nv_bfloat16* dst = b_s + (t * 4 + c) * kBStride + wr * kPerWord;
        if constexpr (kPerWord == 8) {
          *reinterpret_cast<uint4*>(dst) = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
        } else {
          *reinterpret_cast<uint2*>(dst) = make_uint2(pairs[0], pairs[1]);
        }
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kGemmK / 16; ++kk) {
      // B[k][n] = W[n][k]: the tile's columns are rows of b_s, i.e. a column-major k × n matrix.
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
      wmma::load_matrix_sync(b, b_s + warp * 16 * kBStride + kk * 16, kBStride);
      // Unrolled with a guard rather than bounded by row_fragments, so acc[] stays in registers (a runtime index
      // would put the fragments on the stack).
#pragma unroll
      for (int f = 0; f < 4; ++f) {
        if (f >= row_fragments) break;
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::load_matrix_sync(a, a_s + f * 16 * kAStride + kk * 16, kAStride);
        wmma::mma_sync(acc[f], a, b, acc[f]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int f = 0; f < 4; ++f) {
    wmma::store_matrix_sync(c_s + f * 16 * kCStride + warp * 16, acc[f], kCStride, wmma::mem_row_major);
  }
  __syncthreads();
  const int64_t col0 = tile0 * kQuantTileColumns;
  for (int e = threadIdx.x; e < kGemmRows * kGemmCols; e += kGemmThreads) {
    const int r = e / kGemmCols;
    const int c = e % kGemmCols;
    const int64_t row = row0 + r;
    const int64_t j = col0 + c;
    if (row >= n || j >= rows) continue;
    float v = c_s[r * kCStride + c];
    if (gridDim.z == 1) {
      if (bias != nullptr) v += load_weight(bias, bias_bf16, j);
      out[row * rows + j] = v;
    } else {
      partials[(int64_t{blockIdx.z} * n + row) * rows + j] = v;
    }
  }
}

__global__ void sum_splits_kernel(const float* partials, int32_t splits, int64_t n, int64_t rows, const void* bias,
                                  bool bias_bf16, float* out) {
  const int64_t count = n * rows;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count; e += int64_t{gridDim.x} * blockDim.x) {
    float v = 0.0f;
    for (int32_t s = 0; s < splits; ++s) v += partials[s * count + e];
    if (bias != nullptr) v += load_weight(bias, bias_bf16, e % rows);
    out[e] = v;
  }
}

unsigned grid_for(int64_t count, int threads) {
  return static_cast<unsigned>(std::min<int64_t>(ceil_div(count, threads), int64_t{1} << 16));
}

void check_shape(const QuantizedShape& shape) {
  BM_CHECK(shape.bits == 4 || shape.bits == 8);
  BM_CHECK(shape.rows > 0 && shape.cols > 0 && shape.group_size > 0);
  BM_CHECK(shape.group_size % shape.values_per_word() == 0 && shape.cols % shape.group_size == 0);
}

struct Views {
  const uint4* words;
  const uint4* params;
  const int32_t* perm;
  QuantizedDeviceLayout layout;
  GroupIndex groups;
};

Views views_of(const QuantizedWeightPtr& weight) {
  check_shape(weight.shape);
  BM_CHECK(weight.data != nullptr && reinterpret_cast<uintptr_t>(weight.data) % 16 == 0);
  const QuantizedDeviceLayout layout = quantized_device_layout(weight.shape);
  BM_CHECK(layout.word_rows <= int64_t{0x7fffffff});  // group_of() works on 32-bit word rows
  GroupIndex groups;
  groups.words_per_group = static_cast<uint32_t>(weight.shape.group_size / weight.shape.values_per_word());
  if ((groups.words_per_group & (groups.words_per_group - 1)) == 0) {
    groups.shift = 0;
    while ((uint32_t{1} << groups.shift) != groups.words_per_group) ++groups.shift;
  }
  return Views{reinterpret_cast<const uint4*>(weight.data + layout.words_offset),
               reinterpret_cast<const uint4*>(weight.data + layout.params_offset),
               weight.shape.permuted ? reinterpret_cast<const int32_t*>(weight.data + layout.perm_offset) : nullptr,
               layout, groups};
}

template <int Bits, int R>
void launch_gemv_rows(const float* x, int32_t n, const Views& v, const QuantizedShape& shape, WeightPtr bias,
                      float* out, cudaStream_t stream) {
  gemv_kernel<Bits, R><<<static_cast<unsigned>(v.layout.num_tiles), kGemvThreads, 0, stream>>>(
      x, n, v.words, v.params, v.layout.word_rows, v.layout.num_groups, v.groups, shape.rows, bias.data, bias.bf16,
      out);
}

template <int Bits>
void launch_gemv_bits(const float* x, int32_t n, const Views& v, const QuantizedShape& shape, WeightPtr bias,
                      float* out, cudaStream_t stream) {
  if (n == 1) {
    launch_gemv_rows<Bits, 1>(x, n, v, shape, bias, out, stream);
  } else if (n == 2) {
    launch_gemv_rows<Bits, 2>(x, n, v, shape, bias, out, stream);
  } else if (n <= 4) {
    launch_gemv_rows<Bits, 4>(x, n, v, shape, bias, out, stream);
  } else {
    launch_gemv_rows<Bits, 8>(x, n, v, shape, bias, out, stream);
  }
}

}  // namespace

QuantizedDeviceLayout quantized_device_layout(const QuantizedShape& shape) {
  check_shape(shape);
  QuantizedDeviceLayout layout;
  layout.num_tiles = ceil_div(shape.rows, kQuantTileColumns);
  layout.word_rows = shape.cols / shape.values_per_word();
  layout.num_groups = shape.num_groups();
  layout.words_offset = 0;
  layout.params_offset = align_up(layout.num_tiles * layout.word_rows * 16);
  layout.perm_offset = align_up(layout.params_offset + layout.num_tiles * layout.num_groups * 16);
  layout.total_bytes = layout.perm_offset + (shape.permuted ? shape.cols * 4 : 0);
  return layout;
}

void pack_quantized_for_device(const QuantizedMatrixSource& source, std::byte* dst) {
  const QuantizedShape& shape = source.shape;
  const QuantizedDeviceLayout layout = quantized_device_layout(shape);
  BM_CHECK(static_cast<int64_t>(source.qweight.size()) == layout.word_rows * shape.rows);
  BM_CHECK(static_cast<int64_t>(source.scales.size()) == layout.num_groups * shape.rows);
  BM_CHECK(static_cast<int64_t>(source.zeros.size()) == layout.num_groups * shape.rows);
  BM_CHECK(static_cast<int64_t>(source.perm.size()) == (shape.permuted ? shape.cols : 0));
  std::memset(dst, 0, static_cast<size_t>(layout.total_bytes));
  auto* words = reinterpret_cast<uint32_t*>(dst + layout.words_offset);
  auto* params = reinterpret_cast<uint32_t*>(dst + layout.params_offset);
  // Source rows are read in order (the checkpoint's [word_rows, rows] and [groups, rows]).
  for (int64_t w = 0; w < layout.word_rows; ++w) {
    const uint32_t* row = source.qweight.data() + w * shape.rows;
    for (int64_t j = 0; j < shape.rows; ++j) {
      words[((j / kQuantTileColumns) * layout.word_rows + w) * kQuantTileColumns + j % kQuantTileColumns] = row[j];
    }
  }
  for (int64_t g = 0; g < layout.num_groups; ++g) {
    for (int64_t j = 0; j < shape.rows; ++j) {
      const size_t index = static_cast<size_t>(g * shape.rows + j);
      params[((j / kQuantTileColumns) * layout.num_groups + g) * kQuantTileColumns + j % kQuantTileColumns] =
          uint32_t{source.scales[index]} | uint32_t{source.zeros[index]} << 16;
    }
  }
  if (shape.permuted) {
    std::memcpy(dst + layout.perm_offset, source.perm.data(), static_cast<size_t>(shape.cols * 4));
  }
}

void launch_quantized_permute(const float* x, int64_t n, const QuantizedWeightPtr& weight, float* out,
                              cudaStream_t stream) {
  const Views v = views_of(weight);
  BM_CHECK(weight.shape.permuted && x != nullptr && out != nullptr && x != out && n >= 0);
  if (n == 0) return;
  permute_kernel<<<grid_for(n * weight.shape.cols, 256), 256, 0, stream>>>(x, n, weight.shape.inputs(),
                                                                           weight.shape.cols, v.perm, out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_quantized_dequantize(const QuantizedWeightPtr& weight, float* dense, cudaStream_t stream) {
  const Views v = views_of(weight);
  BM_CHECK(dense != nullptr);
  const int64_t count = v.layout.num_tiles * v.layout.word_rows;
  if (weight.shape.bits == 4) {
    dequantize_kernel<4><<<grid_for(count, 256), 256, 0, stream>>>(v.words, v.params, v.perm, v.layout.num_tiles,
                                                                   v.layout.word_rows, v.layout.num_groups, v.groups,
                                                                   weight.shape.rows, weight.shape.inputs(), dense);
  } else {
    dequantize_kernel<8><<<grid_for(count, 256), 256, 0, stream>>>(v.words, v.params, v.perm, v.layout.num_tiles,
                                                                   v.layout.word_rows, v.layout.num_groups, v.groups,
                                                                   weight.shape.rows, weight.shape.inputs(), dense);
  }
  BM_CUDA_CHECK_LAUNCH();
}

void launch_quantized_gemv(const float* x, int64_t n, const QuantizedWeightPtr& weight, WeightPtr bias, float* out,
                           cudaStream_t stream) {
  const Views v = views_of(weight);
  BM_CHECK(n >= 1 && n <= kQuantGemvMaxRows && x != nullptr && out != nullptr);
  BM_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0);  // float4 loads; cols is a multiple of 4
  if (weight.shape.bits == 4) {
    launch_gemv_bits<4>(x, static_cast<int32_t>(n), v, weight.shape, bias, out, stream);
  } else {
    launch_gemv_bits<8>(x, static_cast<int32_t>(n), v, weight.shape, bias, out, stream);
  }
  BM_CUDA_CHECK_LAUNCH();
}

int32_t quantized_gemm_splits(int64_t n, const QuantizedShape& shape, int32_t num_sms) {
  check_shape(shape);
  BM_CHECK(n > 0 && num_sms > 0);
  const int64_t blocks = ceil_div(shape.rows, kGemmCols) * ceil_div(n, kGemmRows);
  const int64_t steps = ceil_div(shape.cols, kGemmK);
  // About two blocks per SM; every split gets at least one whole step and none is empty.
  const int64_t wanted =
      std::clamp<int64_t>(ceil_div(2 * int64_t{num_sms}, blocks), 1, std::min<int64_t>(steps, kMaxSplits));
  const int64_t per_split = ceil_div(steps, wanted);
  return static_cast<int32_t>(ceil_div(steps, per_split));
}

int64_t quantized_gemm_workspace_floats(int64_t n, const QuantizedShape& shape, int32_t num_sms) {
  const int32_t splits = quantized_gemm_splits(n, shape, num_sms);
  return splits > 1 ? splits * n * shape.rows : 0;
}

void launch_quantized_gemm(const float* x, int64_t n, const QuantizedWeightPtr& weight, WeightPtr bias, int32_t num_sms,
                           float* workspace, int64_t workspace_floats, float* out, cudaStream_t stream) {
  const Views v = views_of(weight);
  const QuantizedShape& shape = weight.shape;
  BM_CHECK(n >= 1 && n <= int64_t{0x7fffffff} && x != nullptr && out != nullptr);
  BM_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0);
  const int32_t splits = quantized_gemm_splits(n, shape, num_sms);
  BM_CHECK(splits == 1 || (workspace != nullptr && workspace_floats >= splits * n * shape.rows));
  const int64_t steps = ceil_div(shape.cols, kGemmK);
  const int32_t steps_per_split = static_cast<int32_t>(ceil_div(steps, splits));
  const int64_t row_blocks = ceil_div(n, kGemmRows);
  BM_CHECK(row_blocks <= 65535);
  const dim3 grid(static_cast<unsigned>(ceil_div(shape.rows, kGemmCols)), static_cast<unsigned>(row_blocks),
                  static_cast<unsigned>(splits));
  const int32_t rows32 = static_cast<int32_t>(n);
  if (shape.bits == 4) {
    gemm_kernel<4><<<grid, kGemmThreads, 0, stream>>>(x, rows32, v.words, v.params, v.layout.num_tiles,
                                                      v.layout.word_rows, v.layout.num_groups, v.groups, shape.rows,
                                                      steps_per_split, bias.data, bias.bf16, out, workspace);
  } else {
    gemm_kernel<8><<<grid, kGemmThreads, 0, stream>>>(x, rows32, v.words, v.params, v.layout.num_tiles,
                                                      v.layout.word_rows, v.layout.num_groups, v.groups, shape.rows,
                                                      steps_per_split, bias.data, bias.bf16, out, workspace);
  }
  BM_CUDA_CHECK_LAUNCH();
  if (splits == 1) return;
  sum_splits_kernel<<<grid_for(n * shape.rows, 256), 256, 0, stream>>>(workspace, splits, n, shape.rows, bias.data,
                                                                       bias.bf16, out);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
