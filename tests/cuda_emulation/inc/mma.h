#pragma once
// Semantic WMMA stand-in for the emulator: a fragment holds the WHOLE 16x16 tile (every lane an identical copy);
// there is deliberately no x[] / num_elements, so a kernel relying on the fragment element layout fails to compile.
// Loads and stores are warp barriers (every lane's earlier writes are visible to a load; a stored tile is complete
// when the store returns) unless EMU_SYNC=explicit (emu.h), where they order nothing, as on the hardware.
#include <type_traits>
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16);
  float v[16][16];  // a: [m][k], b: [k][n], acc: [m][n]
};
inline float emu_to_f(float x) {
  return x;
}
inline float emu_to_f(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <class Use, class T, class L, class P>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, const P* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>);
  static_assert(std::is_same_v<std::remove_cv_t<P>, T>, "pointer type must match the fragment type");
  emu_collective_barrier();
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      // i, j = row, column of the fragment's matrix (a: m,k; b: k,n)
      const bool row = std::is_same_v<L, row_major>;
      f.v[i][j] = emu_to_f(row ? p[i * ldm + j] : p[j * ldm + i]);
    }
  emu_collective_barrier();
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  emu_collective_barrier();
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) f.v[i][j] = l == mem_row_major ? p[i * ldm + j] : p[j * ldm + i];
  emu_collective_barrier();
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  emu_collective_barrier();
  const int lane = emu_tid() % 32;
  for (int e = lane; e < 256; e += 32) {
    const int i = e / 16, j = e % 16;
    (l == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.v[i][j];
  }
  emu_collective_barrier();
}
template <class F>
void fill_fragment(F& f, float x) {
  for (auto& r : f.v)
    for (auto& e : r) e = x;
}
template <class LA, class LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA>& a,
              const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  float r[16][16];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      float s = 0;
      for (int k = 0; k < 16; ++k) s += a.v[m][k] * b.v[k][n];
      r[m][n] = c.v[m][n] + s;
    }
  std::memcpy(d.v, r, sizeof r);
}
}  // namespace nvcuda::wmma
