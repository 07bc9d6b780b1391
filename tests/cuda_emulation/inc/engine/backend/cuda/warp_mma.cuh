#pragma once
// Emulator stand-in for engine/backend/cuda/warp_mma.cuh (same functions, same per-lane register layouts; see that
// header for the tables). mma and ldmatrix are warp collectives like the emulator's shuffles: every lane posts
// its operands into a per-warp exchange area and meets the others at one warp barrier, then reads what it owns.
// The exchange area is double-buffered by call parity: a lane can be at most one collective ahead of the slowest
// lane of its warp (the barrier of the next call holds it), so one barrier per call suffices.
//
// ldmatrix reads its 16-byte row when the lane arrives, before the barrier, in both EMU_SYNC modes: as on the
// hardware it orders nothing, so rows other lanes stored without a __syncwarp/__syncthreads first are read stale.
// cp.async: the destination's contents are undefined from the call until the issuing thread's cp_async_wait
// retires the copy's group (commit groups kept per thread, in order). The stand-in makes both ends of that window
// visible: the call overwrites the 16 bytes with 0xff (bf16 NaN) at once, and the copy (its source read at the
// call) lands only at the wait. So a missing or too-shallow cp_async_wait, a missing __syncthreads between the
// waits and the reads, and a missing __syncthreads before a buffer other warps still read is refilled all leave
// NaN or stale data and mismatch.
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

namespace bm::engine::cuda {

namespace emu_warp {
struct Exchange {
  uint32_t words[2][32][6];  // [call parity][lane][operand registers]
};
inline Exchange g_exchange[32];  // per warp
inline unsigned g_calls[1024];   // per thread: warp collectives made so far

// Posts `count` words for this lane, meets the warp and returns the warp's posted words for this call.
inline const uint32_t (*exchange(const uint32_t* words, int count))[6] {
  const int tid = emu_tid();
  const int parity = static_cast<int>(g_calls[tid]++ & 1u);
  auto& area = g_exchange[tid / 32].words[parity];
  std::memcpy(area[tid % 32], words, sizeof(uint32_t) * count);
  emu_warp_barrier();
  return area;
}

inline float low_bf16(uint32_t w) {
  return __uint_as_float(w << 16);
}
inline float high_bf16(uint32_t w) {
  return __uint_as_float(w & 0xffff0000u);
}
inline uint16_t half_of(uint32_t w, int i) {
  return static_cast<uint16_t>(i == 0 ? (w & 0xffffu) : (w >> 16));
}

// ldmatrix: matrix j's row i (8 bf16) was fetched by lane 8j + i.
inline void ldmatrix(uint32_t (&r)[4], const void* row_address, bool trans) {
  uint32_t row[4];
  std::memcpy(row, row_address, 16);  // read on arrival: nothing orders it after other lanes' stores
  const auto posted = exchange(row, 4);
  const int lane = emu_tid() % 32;
  for (int j = 0; j < 4; ++j) {
    uint16_t lo, hi;
    if (!trans) {
      const uint32_t* src = posted[8 * j + lane / 4];
      lo = half_of(src[(lane % 4)], 0);
      hi = half_of(src[(lane % 4)], 1);
    } else {
      // element (row 2(l%4) + e, column l/4): word (l/4)/2 of that row, half (l/4)%2
      const int column = lane / 4;
      lo = half_of(posted[8 * j + 2 * (lane % 4)][column / 2], column % 2);
      hi = half_of(posted[8 * j + 2 * (lane % 4) + 1][column / 2], column % 2);
    }
    r[j] = uint32_t{lo} | (uint32_t{hi} << 16);
  }
}
}  // namespace emu_warp

// d += A * B: the whole 16x16 A and 16x8 B are rebuilt from the warp's fragments (layouts in the device header),
// each output element sums its 16 products in float in k order, then adds to d.
inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  const uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  const auto posted = emu_warp::exchange(mine, 6);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const uint32_t* w = posted[l];
    const int rows[4] = {g, g + 8, g, g + 8};
    const int cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int i = 0; i < 4; ++i) {
      A[rows[i]][cols[i]] = emu_warp::low_bf16(w[i]);
      A[rows[i]][cols[i] + 1] = emu_warp::high_bf16(w[i]);
    }
    B[2 * t][g] = emu_warp::low_bf16(w[4]);
    B[2 * t + 1][g] = emu_warp::high_bf16(w[4]);
    B[2 * t + 8][g] = emu_warp::low_bf16(w[5]);
    B[2 * t + 9][g] = emu_warp::high_bf16(w[5]);
  }
  const int lane = emu_tid() % 32, g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = i < 2 ? g : g + 8;
    const int col = 2 * t + (i & 1);
    float sum = 0.0f;
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    d[i] = d[i] + sum;
  }
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* row_address) {
  emu_warp::ldmatrix(r, row_address, false);
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row_address) {
  emu_warp::ldmatrix(r, row_address, true);
}

inline uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t{__bfloat16_as_ushort(__float2bfloat16_rn(lo))} |
         (uint32_t{__bfloat16_as_ushort(__float2bfloat16_rn(hi))} << 16);
}

namespace emu_warp {
struct PendingCopy {
  void* dst;
  unsigned char bytes[16];
};
struct CopyQueue {
  std::vector<PendingCopy> open;                // issued since the last commit
  std::deque<std::vector<PendingCopy>> groups;  // committed, oldest first
};
inline CopyQueue g_copies[1024];  // per thread
}  // namespace emu_warp

inline void cp_async_16(void* dst, const void* src, bool valid) {
  emu_warp::PendingCopy copy{dst, {}};
  if (valid) std::memcpy(copy.bytes, src, 16);  // valid == false: 16 zero bytes
  std::memset(dst, 0xff, 16);                   // in flight: undefined until the wait
  emu_warp::g_copies[emu_tid()].open.push_back(copy);
}
inline void cp_async_commit() {
  auto& queue = emu_warp::g_copies[emu_tid()];
  queue.groups.push_back(std::move(queue.open));
  queue.open.clear();
}
template <int pending>
void cp_async_wait() {
  auto& queue = emu_warp::g_copies[emu_tid()];
  while (static_cast<int>(queue.groups.size()) > pending) {
    for (const auto& copy : queue.groups.front()) std::memcpy(copy.dst, copy.bytes, 16);
    queue.groups.pop_front();
  }
}

}  // namespace bm::engine::cuda
