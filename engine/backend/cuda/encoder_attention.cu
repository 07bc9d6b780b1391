// Bidirectional attention over packed segments without a KV cache (Backend::segment_attention; the vision
// tower's windows and whole frames, cu_seqlens of varlen flash attention), F32 throughout on CUDA cores: the
// vision tower runs in F32 on the CPU backend and its reference, so no bf16/tf32 rounding is introduced here.
//
// A tile is kRows (64) consecutive query rows of one segment; one block (128 threads) handles a (tile, query
// head). A one-thread schedule kernel first turns segment_starts into the list of tiles, so the grid needs no
// host copy of the offsets and a tile never straddles two segments (a window of 64 rows at any offset is one
// tile, not two half-masked ones). The block then loops over its segment's keys in tiles of kKeys (32) with an
// online softmax (flash attention): shared memory is O(tile) whatever the segment's length, so a full-attention
// block over a 5,476-patch frame needs no n x n scores.
//
// Per key tile: S = Q Kᵀ (each thread a 4 x 4 register block: rows tr + 16 i, keys tk + 8 j), scale, mask of the
// keys past the segment's end, the running max / sum per row (the 8 lanes sharing a row reduce by shuffles),
// P to shared memory, then O = O * alpha + P V with O in registers (rows tr + 16 i, column pairs 16 c + 2 tk).
// Shared-memory traffic is what bounds F32 attention on CUDA cores, so the operands are read as vectors: Q and K
// rows as float4 along head_dim (row stride DP + 4: 16-byte aligned, and the 8 rows one instruction reads fall in
// distinct 16-byte bank groups), P rows as float4 along the keys, V as float2 column pairs — per 4 steps of d 8
// loads feed 64 FMAs, and per 4 keys 1 + DP/16·4 loads feed 4·DP/2 FMAs, instead of one load per 2-4 FMAs.
// head_dim is padded with zero columns to DP, a template bucket (64, 80, 128; a multiple of 16), so any head_dim up
// to 128 works, 80 (Qwen2.5-VL's vision heads, in every size of the model) without waste. Not 256: its tiles would
// take ~138 KiB of shared memory, more than an sm_89 block may have (99 KiB), and a refused launch is a sticky
// device fault; no vision tower this serves has such heads.
#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kRows = kSegmentTileRows;  // query rows per block
constexpr int kKeys = 32;                // keys per inner tile
constexpr int kThreads = 128;
constexpr int kRowGroups = kThreads / 8;            // 16: thread tr = tid / 8 owns rows tr + 16 i
constexpr int kRowsPerThread = kRows / kRowGroups;  // 4
constexpr int kKeysPerThread = kKeys / 8;           // 4: thread tk = tid % 8 owns keys tk + 8 j
static_assert(kRows == 64 && kKeys == 32 && kThreads == 128, "the register blocking assumes these tile sizes");

struct SegmentParams {
  const float* q;
  const float* k;
  const float* v;
  const int32_t* tiles;  // [0] = count, then (first row, segment start, segment end) triples
  int32_t num_heads;
  int32_t group;  // query heads per KV head
  int32_t head_dim;
  float scale;
  float* out;
};

// tiles[1 + 3 t ..] = (first row, segment start, segment end) of tile t. Offsets are clamped to [0, n] and each
// segment's end to at least its start, so that a malformed list (the caller validates it) can never make the
// attention kernel read outside q/k/v; at most `capacity` tiles are written.
__global__ void segment_schedule_kernel(const int32_t* segment_starts, int32_t num_segments, int32_t n, int32_t* tiles,
                                        int64_t capacity) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int64_t count = 0;
  for (int32_t s = 0; s < num_segments; ++s) {
    const int32_t start = min(max(segment_starts[s], 0), n);
    const int32_t end = min(max(segment_starts[s + 1], start), n);
    for (int32_t first = start; first < end && count < capacity; first += kRows, ++count) {
      tiles[1 + 3 * count] = first;
      tiles[2 + 3 * count] = start;
      tiles[3 + 3 * count] = end;
    }
  }
  tiles[0] = static_cast<int32_t>(count);
}

// Row strides in floats. DP + 4 and kKeys + 4 keep every row 16-byte aligned for float4 loads; (DP + 4) / 4 and
// (kKeys + 4) / 4 are odd, so consecutive rows start in different 16-byte bank groups (no conflicts when one
// instruction reads 8 consecutive K rows or 4 consecutive-ish Q/P rows).
template <int DP>
constexpr int kQkStride = DP + 4;
constexpr int kPStride = kKeys + 4;

template <int DP>
constexpr size_t segment_shared_bytes() {
  return sizeof(float) * (size_t{kRows} * kQkStride<DP>    // Q tile
                          + size_t{kKeys} * kQkStride<DP>  // K tile
                          + size_t{kKeys} * DP             // V tile
                          + size_t{kRows} * kPStride);     // P
}

template <int DP>
__global__ void __launch_bounds__(kThreads) segment_attention_kernel(SegmentParams p) {
  static_assert(DP % 16 == 0, "the padded head_dim is split into column pairs over 8 lanes");
  static_assert(kKeys % 4 == 0, "P is read 4 keys at a time");
  constexpr int kPairs = DP / 16;  // output column pairs per thread: columns 16 c + 2 tk, + 1
  constexpr int kQStride = kQkStride<DP>;
  extern __shared__ __align__(16) unsigned char smem[];
  float* q_s = reinterpret_cast<float*>(smem);
  float* k_s = q_s + kRows * kQStride;
  float* v_s = k_s + kKeys * kQStride;
  float* p_s = v_s + kKeys * DP;

  if (static_cast<int32_t>(blockIdx.x) >= p.tiles[0]) return;  // the grid is sized by the bound, not the count
  const int32_t first_row = p.tiles[1 + 3 * blockIdx.x];
  const int32_t seg_start = p.tiles[2 + 3 * blockIdx.x];
  const int32_t seg_end = p.tiles[3 + 3 * blockIdx.x];
  const int32_t rows = min(kRows, seg_end - first_row);
  const int32_t h = blockIdx.y;
  const int32_t kv_head = h / p.group;
  const int32_t head_dim = p.head_dim;
  const int64_t q_stride = int64_t{p.num_heads} * head_dim;
  const int64_t kv_stride = int64_t{p.num_heads / p.group} * head_dim;
  const int tid = threadIdx.x;
  const int tr = tid / 8;
  const int tk = tid % 8;

  // Q tile; rows past the segment and columns past head_dim are zero (their products add exact zeros).
  for (int i = tid; i < kRows * DP; i += kThreads) {
    const int r = i / DP;
    const int c = i % DP;
    q_s[r * kQStride + c] =
        r < rows && c < head_dim ? p.q[(int64_t{first_row} + r) * q_stride + int64_t{h} * head_dim + c] : 0.0f;
  }

  float m[kRowsPerThread];
  float l[kRowsPerThread];
  float2 o[kRowsPerThread][kPairs];
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kPairs; ++c) o[i][c] = make_float2(0.0f, 0.0f);
  }

  for (int32_t kv0 = seg_start; kv0 < seg_end; kv0 += kKeys) {
    __syncthreads();  // the previous tile's K/V are read (and, the first time, the Q tile is written)
    for (int i = tid; i < kKeys * DP; i += kThreads) {
      const int r = i / DP;
      const int c = i % DP;
      const int32_t key = kv0 + r;
      float k_value = 0.0f;
      float v_value = 0.0f;
      if (key < seg_end && c < head_dim) {
        const int64_t offset = int64_t{key} * kv_stride + int64_t{kv_head} * head_dim + c;
        k_value = p.k[offset];
        v_value = p.v[offset];
      }
      k_s[r * kQStride + c] = k_value;
      v_s[r * DP + c] = v_value;  // zero past the end, so a zero P times it stays zero (no garbage NaN)
    }
    __syncthreads();

    // S = Q Kᵀ for rows tr + 16 i and keys tk + 8 j, summed over d in order as the CPU backend does.
    float s[kRowsPerThread][kKeysPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) s[i][j] = 0.0f;
#pragma unroll 2
    for (int d = 0; d < DP; d += 4) {
      float4 qv[kRowsPerThread];
      float4 kv[kKeysPerThread];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i)
        qv[i] = *reinterpret_cast<const float4*>(q_s + (tr + kRowGroups * i) * kQStride + d);
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j)
        kv[j] = *reinterpret_cast<const float4*>(k_s + (tk + 8 * j) * kQStride + d);
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kKeysPerThread; ++j) {
          s[i][j] += qv[i].x * kv[j].x;  // d, d + 1, d + 2, d + 3 in order
          s[i][j] += qv[i].y * kv[j].y;
          s[i][j] += qv[i].z * kv[j].z;
          s[i][j] += qv[i].w * kv[j].w;
        }
    }

    // Online softmax. The 8 lanes tk = 0..7 of one tr are consecutive lanes of one warp (xor 1, 2, 4 stays
    // inside them), and every lane of the block runs this loop the same number of times (full shuffle masks).
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) {
        const bool valid = kv0 + tk + 8 * j < seg_end;
        s[i][j] = valid ? s[i][j] * p.scale : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 4));
      // Finite: key kv0 < seg_end is valid in every tile, and padding rows' scores are zeros, not NaN.
      const float m_new = fmaxf(m[i], tile_max);
      const float alpha = expf(m[i] - m_new);  // 0 on the first tile (m = -inf)
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) {
        const float weight = s[i][j] == -INFINITY ? 0.0f : expf(s[i][j] - m_new);
        p_s[(tr + kRowGroups * i) * kPStride + tk + 8 * j] = weight;
        sum += weight;
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      sum += __shfl_xor_sync(0xffffffffu, sum, 4);
      l[i] = l[i] * alpha + sum;
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < kPairs; ++c) {
        o[i][c].x *= alpha;
        o[i][c].y *= alpha;
      }
    }
    // A row of P is written and read by the 8 lanes of one warp only: a warp barrier orders those shared-memory
    // accesses on the hardware (the shuffles above synchronise the lanes but do not order memory). The emulator
    // cannot tell it is needed: its shuffles already order every lane's writes.
    __syncwarp();

    // O += P V, keys in order.
#pragma unroll 2
    for (int kk = 0; kk < kKeys; kk += 4) {
      float4 pv[kRowsPerThread];
#pragma unroll
      for (int i = 0; i < kRowsPerThread; ++i)
        pv[i] = *reinterpret_cast<const float4*>(p_s + (tr + kRowGroups * i) * kPStride + kk);
#pragma unroll
      for (int step = 0; step < 4; ++step) {
#pragma unroll
        for (int c = 0; c < kPairs; ++c) {
          const float2 vv = *reinterpret_cast<const float2*>(v_s + (kk + step) * DP + 16 * c + 2 * tk);
#pragma unroll
          for (int i = 0; i < kRowsPerThread; ++i) {
            const float weight = step == 0 ? pv[i].x : step == 1 ? pv[i].y : step == 2 ? pv[i].z : pv[i].w;
            o[i][c].x += weight * vv.x;
            o[i][c].y += weight * vv.y;
          }
        }
      }
    }
    __syncwarp();  // P is read before the next tile overwrites it (the block barrier above also orders it)
  }

#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int r = tr + kRowGroups * i;
    if (r >= rows) continue;
    float* out_row = p.out + (int64_t{first_row} + r) * q_stride + int64_t{h} * head_dim;
#pragma unroll
    for (int c = 0; c < kPairs; ++c) {
      const int col = 16 * c + 2 * tk;
      if (col < head_dim) out_row[col] = o[i][c].x / l[i];
      if (col + 1 < head_dim) out_row[col + 1] = o[i][c].y / l[i];
    }
  }
}

template <int DP>
void launch_segment(const SegmentParams& p, unsigned num_tiles, cudaStream_t stream) {
  constexpr size_t bytes = segment_shared_bytes<DP>();
  // Above 48 KiB a kernel must opt in to its dynamic shared memory (DP 80 needs 50.5 KiB, DP 128 74.5 KiB; a
  // block may have up to 99 KiB on sm_89, 163 KiB on sm_80, 227 KiB on sm_90).
  BM_CUDA_CHECK(cudaFuncSetAttribute(segment_attention_kernel<DP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(bytes)));
  const dim3 grid(num_tiles, static_cast<unsigned>(p.num_heads));
  segment_attention_kernel<DP><<<grid, kThreads, bytes, stream>>>(p);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t segment_attention_workspace_ints(int64_t n, int32_t num_segments) {
  // Every segment has at most one partial tile: sum of ceil(len / kRows) <= n / kRows + num_segments.
  return 1 + 3 * (ceil_div(n, kRows) + num_segments);
}

void launch_segment_attention(const float* q, const float* k, const float* v, int64_t n, const int32_t* segment_starts,
                              int32_t num_segments, const AttentionDims& dims, const SegmentWorkspace& workspace,
                              float* out, cudaStream_t stream) {
  BM_CHECK(n >= 0 && n <= int64_t{0x7fffffff} && num_segments >= 0);
  BM_CHECK(dims.num_heads > 0 && dims.num_kv_heads > 0 && dims.num_heads % dims.num_kv_heads == 0);
  BM_CHECK(dims.num_heads <= 65535);  // grid y
  BM_CHECK(dims.head_dim > 0 && dims.head_dim <= kSegmentMaxHeadDim);
  BM_CHECK(q != nullptr && k != nullptr && v != nullptr && out != nullptr && segment_starts != nullptr);
  if (n == 0 || num_segments == 0) return;
  const int64_t needed = segment_attention_workspace_ints(n, num_segments);
  BM_CHECK(workspace.data != nullptr && workspace.num_ints >= needed);
  const int64_t capacity = (needed - 1) / 3;
  BM_CHECK(capacity <= int64_t{0x7fffffff});
  segment_schedule_kernel<<<1, 32, 0, stream>>>(segment_starts, num_segments, static_cast<int32_t>(n), workspace.data,
                                                capacity);
  BM_CUDA_CHECK_LAUNCH();
  SegmentParams p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.tiles = workspace.data;
  p.num_heads = dims.num_heads;
  p.group = dims.num_heads / dims.num_kv_heads;
  p.head_dim = dims.head_dim;
  p.scale = dims.scale;
  p.out = out;
  const auto tiles = static_cast<unsigned>(capacity);
  // The smallest bucket that holds head_dim: the padding columns cost work, so the real models' dims have one
  // (80: Qwen2.5-VL's vision heads; 64 and 128: the common decoder dims). Three instantiations keep the plugin's
  // build time in bounds (one per bucket and architecture).
  if (dims.head_dim <= 64) {
    launch_segment<64>(p, tiles, stream);
  } else if (dims.head_dim <= 80) {
    launch_segment<80>(p, tiles, stream);
  } else {
    launch_segment<128>(p, tiles, stream);
  }
}

}  // namespace bm::engine::cuda
