// The emulator's EMU_SYNC=explicit mode (emu.h) catches a missing __syncwarp around WMMA loads and stores, which
// the default mode cannot: two small warp kernels, each with and without the __syncwarp the hardware needs, must
// give the right result with it and a wrong one without it in the explicit mode. The default mode is run too and
// its results printed (both variants pass there: the blind spot the explicit mode exists for). Exits 1 when the
// explicit mode misses the hazard or the synchronised kernels go wrong.
#include <cmath>
#include <cstdio>
#include <vector>

#include "tests/cuda_emulation/emu.h"
#include "tests/cuda_emulation/inc/mma.h"

namespace {

namespace wmma = nvcuda::wmma;

// A tile round trip through shared memory: store_matrix_sync, then every lane sums one row of the stored tile,
// which other lanes wrote.
void store_then_read_rows(const float* in, bool sync, float* row_sums) {
  __shared__ float tile_s[16 * 16];
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 256; i += 32) tile_s[i] = -1000.0f;
  __syncwarp();
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, in, 16, wmma::mem_row_major);
  wmma::store_matrix_sync(tile_s, acc, 16, wmma::mem_row_major);
  if (sync) __syncwarp();
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += tile_s[(lane % 16) * 16 + j];
  row_sums[lane] = sum;
  __syncwarp();  // the tile is rewritten by the next launch's first loop (static shared memory)
}

// Lanes fill a shared tile with plain stores, then load it as a fragment (which reads every lane's stores) and
// store the fragment to global memory.
void plain_stores_then_load(const float* in, bool sync, float* out) {
  __shared__ float tile_s[16 * 16];
  const int lane = static_cast<int>(threadIdx.x);
  for (int i = lane; i < 256; i += 32) tile_s[i] = -1000.0f;
  __syncwarp();
  for (int j = 0; j < 8; ++j) tile_s[lane * 8 + j] = in[lane * 8 + j];  // not the lanes' shares of the store below
  if (sync) __syncwarp();
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(acc, tile_s, 16, wmma::mem_row_major);
  wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
  __syncwarp();
}

struct Outcome {
  bool rows_ok, tile_ok;
};

Outcome run(bool sync) {
  std::vector<float> in(256);
  for (int i = 0; i < 256; ++i) in[i] = static_cast<float>(i % 37) - 11.0f;
  std::vector<float> sums(32, NAN), out(256, NAN);
  emu_launch(dim3(1), dim3(32), [&] { store_then_read_rows(in.data(), sync, sums.data()); });
  emu_launch(dim3(1), dim3(32), [&] { plain_stores_then_load(in.data(), sync, out.data()); });
  Outcome o{true, true};
  for (int lane = 0; lane < 32; ++lane) {
    float expected = 0.0f;
    for (int j = 0; j < 16; ++j) expected += in[(lane % 16) * 16 + j];
    o.rows_ok &= sums[lane] == expected;
  }
  for (int i = 0; i < 256; ++i) o.tile_ok &= out[i] == in[i];
  return o;
}

}  // namespace

int main() {
  int failures = 0;
  for (const bool explicit_sync : {false, true}) {
    emu_explicit_sync() = explicit_sync;
    for (const bool sync : {true, false}) {
      const Outcome o = run(sync);
      std::printf("%-8s mode, %-17s: store->read rows %s, stores->load_matrix %s\n",
                  explicit_sync ? "explicit" : "default", sync ? "with __syncwarp" : "without __syncwarp",
                  o.rows_ok ? "right" : "WRONG", o.tile_ok ? "right" : "WRONG");
      if (sync && !(o.rows_ok && o.tile_ok)) {
        std::printf("  FAIL: the synchronised kernels must be right in every mode\n");
        ++failures;
      }
      if (explicit_sync && !sync && (o.rows_ok || o.tile_ok)) {
        std::printf("  FAIL: the explicit mode did not catch a missing __syncwarp\n");
        ++failures;
      }
    }
  }
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
