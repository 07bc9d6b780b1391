// The emulator's stand-in for warp_mma.cuh (mma.sync m16n8k16 bf16, ldmatrix .x4 plain and transposed) against a
// plain matrix product, for random inputs. The per-lane registers are built here straight from the PTX ISA's
// fragment tables (written out below, independently of the stand-in's code), so a stand-in that used another
// layout than the hardware's would fail; ldmatrix is checked against the same tables with the row-address pattern
// the prefill kernel uses. Also checks that ldmatrix orders nothing: rows other lanes stored are read stale
// without a __syncwarp first, and that cp.async destinations are poisoned until the wait. Exits 1 on any mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "tests/cuda_emulation/emu.h"
#include "tests/cuda_emulation/inc/engine/backend/cuda/warp_mma.cuh"

namespace {

using bm::engine::cuda::ldmatrix_x4;
using bm::engine::cuda::ldmatrix_x4_trans;
using bm::engine::cuda::mma_bf16_16816;

int failures = 0;

uint16_t bf16_bits(float x) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}
float bf16_value(uint16_t bits) {
  return __uint_as_float(uint32_t{bits} << 16);
}
uint32_t pair(uint16_t lo, uint16_t hi) {
  return uint32_t{lo} | (uint32_t{hi} << 16);
}

// PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type" (g = lane >> 2, t = lane % 4):
// A element i (0..7) of a lane: row g + 8 * ((i / 2) % 2), column 2t + (i % 2) + 8 * (i / 4).
// B element i (0..3): row (k) 2t + (i % 2) + 8 * (i / 2), column (n) g.
// C element i (0..3): row g + 8 * (i / 2), column 2t + (i % 2).
struct Cell {
  int row, col;
};
Cell a_cell(int lane, int i) {
  return {lane / 4 + 8 * ((i / 2) % 2), 2 * (lane % 4) + (i % 2) + 8 * (i / 4)};
}
Cell b_cell(int lane, int i) {
  return {2 * (lane % 4) + (i % 2) + 8 * (i / 2), lane / 4};
}
Cell c_cell(int lane, int i) {
  return {lane / 4 + 8 * (i / 2), 2 * (lane % 4) + (i % 2)};
}

// D = C + A B with A 16x16, B 16x16 (two 8-column n-tiles), all fragments from the tables; then the same with the
// fragments loaded by ldmatrix from shared memory (A row-major, B as Bᵀ row-major for the plain form and as B
// row-major for .trans), stride 24 elements (padded as the kernel pads).
void check_product(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  constexpr int kStride = 24;
  alignas(16) static uint16_t a_s[16 * kStride], bt_s[16 * kStride], b_s[16 * kStride];
  float A[16][16], B[16][16], C[16][16];
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) {
      a_s[r * kStride + c] = bf16_bits(normal(rng));
      A[r][c] = bf16_value(a_s[r * kStride + c]);
      b_s[r * kStride + c] = bf16_bits(normal(rng));  // B[k = r][n = c]
      B[r][c] = bf16_value(b_s[r * kStride + c]);
      C[r][c] = normal(rng);
    }
  for (int n = 0; n < 16; ++n)
    for (int k = 0; k < 16; ++k) bt_s[n * kStride + k] = b_s[k * kStride + n];

  float from_tables[32][2][4], from_ldmatrix[32][2][4], from_trans[32][2][4];
  uint32_t a_table[32][4], a_loaded[32][4], b_table[32][2][2], b_loaded[32][2][2], b_trans[32][2][2];
  emu_launch(dim3(1), dim3(32), [&] {
    const int lane = static_cast<int>(threadIdx.x);
    uint32_t a[4];
    for (int r = 0; r < 4; ++r) {
      const Cell lo = a_cell(lane, 2 * r), hi = a_cell(lane, 2 * r + 1);
      a[r] = pair(a_s[lo.row * kStride + lo.col], a_s[hi.row * kStride + hi.col]);
    }
    uint32_t b[2][2];
    for (int n = 0; n < 2; ++n)
      for (int r = 0; r < 2; ++r) {
        const Cell lo = b_cell(lane, 2 * r), hi = b_cell(lane, 2 * r + 1);
        b[n][r] = pair(b_s[lo.row * kStride + n * 8 + lo.col], b_s[hi.row * kStride + n * 8 + hi.col]);
      }
    for (int n = 0; n < 2; ++n) {
      float d[4];
      for (int i = 0; i < 4; ++i) d[i] = C[c_cell(lane, i).row][n * 8 + c_cell(lane, i).col];
      mma_bf16_16816(d, a, b[n]);
      for (int i = 0; i < 4; ++i) from_tables[lane][n][i] = d[i];
    }
    // The kernel's address patterns: A as Q (matrices rows 0-7 | 8-15 x columns 0-7 | 8-15), B from Bᵀ as K,
    // B from B as V (transposed).
    uint32_t al[4], bl[4], bv[4];
    ldmatrix_x4(al, a_s + (lane % 16) * kStride + (lane / 16) * 8);
    ldmatrix_x4(bl, bt_s + ((lane / 16) * 8 + lane % 8) * kStride + ((lane / 8) % 2) * 8);
    ldmatrix_x4_trans(bv, b_s + (((lane / 8) % 2) * 8 + lane % 8) * kStride + (lane / 16) * 8);
    for (int n = 0; n < 2; ++n) {
      const uint32_t bn[2] = {bl[2 * n], bl[2 * n + 1]};
      const uint32_t bt[2] = {bv[2 * n], bv[2 * n + 1]};
      float d[4], e[4];
      for (int i = 0; i < 4; ++i) d[i] = e[i] = C[c_cell(lane, i).row][n * 8 + c_cell(lane, i).col];
      mma_bf16_16816(d, al, bn);
      mma_bf16_16816(e, al, bt);
      for (int i = 0; i < 4; ++i) {
        from_ldmatrix[lane][n][i] = d[i];
        from_trans[lane][n][i] = e[i];
      }
      for (int r = 0; r < 2; ++r) {
        b_table[lane][n][r] = b[n][r];
        b_loaded[lane][n][r] = bn[r];
        b_trans[lane][n][r] = bt[r];
      }
    }
    for (int r = 0; r < 4; ++r) {
      a_table[lane][r] = a[r];
      a_loaded[lane][r] = al[r];
    }
  });

  double worst = 0;
  int bad = 0;
  for (int lane = 0; lane < 32; ++lane) {
    for (int r = 0; r < 4; ++r) bad += a_table[lane][r] != a_loaded[lane][r];
    for (int n = 0; n < 2; ++n)
      for (int r = 0; r < 2; ++r)
        bad += (b_table[lane][n][r] != b_loaded[lane][n][r]) + (b_table[lane][n][r] != b_trans[lane][n][r]);
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 4; ++i) {
        const Cell cell = c_cell(lane, i);
        double exact = C[cell.row][n * 8 + cell.col], magnitude = std::fabs(exact);
        for (int k = 0; k < 16; ++k) {
          exact += double(A[cell.row][k]) * B[k][n * 8 + cell.col];
          magnitude += std::fabs(double(A[cell.row][k]) * B[k][n * 8 + cell.col]);
        }
        for (const float got : {from_tables[lane][n][i], from_ldmatrix[lane][n][i], from_trans[lane][n][i]}) {
          const double error = std::fabs(got - exact) / magnitude;
          worst = std::max(worst, std::isnan(error) ? INFINITY : error);
          if (!(error <= 1e-6)) ++bad;
        }
      }
  }
  std::printf(
      "seed %u: mma from the PTX tables, via ldmatrix, via ldmatrix.trans: max error %.2e of sum|a*b| "
      "(tolerance 1e-6), %d fragment/result mismatches: %s\n",
      seed, worst, bad, bad ? "FAIL" : "ok");
  failures += bad != 0;
}

// Lane l stores row (l + 1) % 16 of a 16x16 tile, then the warp loads it with ldmatrix: with a __syncwarp between
// the fragments match the tile; without one the emulator (like the hardware) gives no ordering, so the rows other
// lanes store later are read stale (forward and reverse order: lanes 0 and 15's rows come from lanes 15 and 14).
int ldmatrix_stale_reads(bool sync) {
  alignas(16) static uint16_t tile[16 * 16];
  int wrong = 0;
  emu_launch(dim3(1), dim3(32), [&] {
    const int lane = static_cast<int>(threadIdx.x);
    if (lane < 16) {
      const int row = (lane + 1) % 16;
      for (int c = 0; c < 16; ++c) tile[row * 16 + c] = static_cast<uint16_t>(row * 16 + c + 1);
    }
    if (sync) __syncwarp();
    uint32_t r[4];
    ldmatrix_x4(r, tile + (lane % 16) * 16 + (lane / 16) * 8);
    for (int j = 0; j < 4; ++j) {
      const Cell lo = a_cell(lane, 2 * j);
      if (r[j] !=
          pair(static_cast<uint16_t>(lo.row * 16 + lo.col + 1), static_cast<uint16_t>(lo.row * 16 + lo.col + 2)))
        ++wrong;
    }
    __syncwarp();
    if (lane < 16)
      for (int c = 0; c < 16; ++c) tile[((lane + 1) % 16) * 16 + c] = 0;  // the next launch starts from zeros
  });
  return wrong;
}

// cp.async lands at the issuing thread's wait: before it the destination holds the stand-in's 0xff poison (in
// flight: undefined), after a cp_async_wait<0> the copy; a group left in flight by cp_async_wait<1> has not landed;
// valid == false zero-fills.
bool copies_land_at_the_wait() {
  alignas(16) static unsigned char dst[4][16];
  alignas(16) static const unsigned char src[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  bool right = true;
  emu_launch(dim3(1), dim3(1), [&] {
    std::memset(dst, 0xee, sizeof dst);
    bm::engine::cuda::cp_async_16(dst[0], src, true);
    bm::engine::cuda::cp_async_16(dst[1], src, false);
    bm::engine::cuda::cp_async_commit();
    right &= dst[0][0] == 0xff && dst[1][0] == 0xff && dst[2][0] == 0xee;
    bm::engine::cuda::cp_async_16(dst[2], src, true);
    bm::engine::cuda::cp_async_commit();
    bm::engine::cuda::cp_async_wait<1>();  // the first group only
    right &= std::memcmp(dst[0], src, 16) == 0 && dst[1][0] == 0 && dst[1][15] == 0 && dst[2][0] == 0xff;
    bm::engine::cuda::cp_async_wait<0>();
    right &= std::memcmp(dst[2], src, 16) == 0;
  });
  return right;
}

}  // namespace

int main() {
  for (uint32_t seed = 1; seed <= 4; ++seed) check_product(seed);
  const int with_sync = ldmatrix_stale_reads(true);
  const int without_sync = ldmatrix_stale_reads(false);
  std::printf("ldmatrix after other lanes' stores: %d wrong registers with __syncwarp, %d without (must be > 0)\n",
              with_sync, without_sync);
  failures += with_sync != 0 || without_sync == 0;
  const bool copies = copies_land_at_the_wait();
  std::printf("cp.async: copies land at the issuing thread's wait, not before: %s\n", copies ? "ok" : "FAIL");
  failures += !copies;
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
