// Row lookups: the token embedding (BF16 or F32 table widened to F32) and gather_rows (F32 rows picked by id).
// One block per output row; threads stride over the columns, so reads and writes are coalesced.
#include <cmath>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void embedding_kernel(const void* table, bool bf16, int64_t vocab, int64_t hidden, const int32_t* ids,
                                 float* out) {
  const int64_t i = blockIdx.x;
  const int64_t id = ids[i];
  float* row = out + i * hidden;
  if (id < 0 || id >= vocab) {
    for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) row[c] = NAN;
    return;
  }
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) row[c] = load_weight(table, bf16, id * hidden + c);
}

__global__ void gather_rows_kernel(const float* x, int64_t x_rows, int64_t d, const int32_t* row_ids, float* out) {
  const int64_t r = blockIdx.x;
  const int64_t id = row_ids[r];
  float* row = out + r * d;
  if (id < 0 || id >= x_rows) {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) row[c] = NAN;
    return;
  }
  const float* src = x + id * d;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) row[c] = src[c];
}

}  // namespace

void launch_embedding(WeightPtr table, int64_t vocab, int64_t hidden, const int32_t* ids, int64_t n, float* out,
                      cudaStream_t stream) {
  BM_CHECK(vocab > 0 && hidden > 0 && n >= 0 && n <= int64_t{0x7fffffff});
  BM_CHECK(table.data != nullptr && ids != nullptr && out != nullptr);
  if (n == 0) return;
  embedding_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(table.data, table.bf16, vocab, hidden, ids, out);
  BM_CUDA_CHECK_LAUNCH();
}

void launch_gather_rows(const float* x, int64_t x_rows, int64_t d, const int32_t* row_ids, int64_t num_rows, float* out,
                        cudaStream_t stream) {
  BM_CHECK(x_rows >= 0 && d > 0 && num_rows >= 0 && num_rows <= int64_t{0x7fffffff});
  BM_CHECK(x != nullptr && row_ids != nullptr && out != nullptr);
  if (num_rows == 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(x, x_rows, d, row_ids, out);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
