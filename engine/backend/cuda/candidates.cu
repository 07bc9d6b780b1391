// Backend::top_candidates: per row of logits, the raw logits of the listed ids, the k best unlisted ids (best
// first, ties to the lower id, padded with id -1 / -inf), the log-sum-exp of the whole row and the tempered one of
// the unlisted ids (for top-p), so the host sampler never copies whole rows. One block of kThreads per row; the row is
// read 2-4 times (plus the few listed entries):
//
//   1. Gather: listed_logits[j] = row[listed_ids[j]] (folded into the log-sum-exp); after a barrier every listed
//      position is overwritten with kListedBits, a NaN whose order key is 0, which no other pass counts. (The
//      contract lets the op overwrite `logits`.)
//   2. Pass 0 reads the row once for the log-sum-exp (online max and rescaled sum, F32, expf) and a 4096-bin
//      histogram of the top 12 bits of each unlisted value's order key (an order-preserving uint32 of the float
//      bits, -0 folded onto +0 because they compare equal). The bin holding the k-th largest key is found by a
//      block scan over the bins, best first.
//   3. Passes 1 and 2 histogram the next 10 and the last 10 bits of the keys inside that bin (1024 bins each);
//      the selection stops early once the picked bin holds exactly as many keys as are still wanted.
//   4. Collect: keys above the picked bin go to shared memory in any order; from the picked bin either all its
//      keys (when they are exactly the ones still wanted) or, for exact ties, the lowest ids in id order (a block
//      scan per chunk of the row keeps the order).
//   5. The <= 64 collected entries are sorted by rank (each counts the entries better than itself: key
//      descending, id ascending) and written; the slots past the real candidates (fewer than k unlisted ids)
//      get id -1 and -inf.
// Unlisted -inf logits are ordinary candidates (their key is above 0). NaN logits have no specified rank.
//
// Structured output: a constrained row (mask_rows[r] >= 0) reads its allowed-token bitmask alongside the row and
// gives a forbidden id key 0 in every pass, as if it were listed, so it never becomes a candidate and adds
// nothing to either sum; a forbidden listed id gathers -inf. Masking on the fly rather than writing -inf into the
// row first costs no extra pass over the row (the ids of one chunk share a mask word, 1 load per 4 logits) and
// leaves the rest of `logits` as it was (the contract: whole rows fetched afterwards are the raw ones).
//
// Few rows (batch 1 would leave the selection on one SM): each row is split into slices, one block each, running
// the same steps over its slice (select_range) and writing its share (its best <= k, in order, and both sums as
// max + relative sum) to a workspace; a merge kernel ranks each row's shares (see merge_candidates_kernel). Two
// kernels, not a last-block-done counter, so nothing needs resetting between graph replays.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/check.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/device_util.cuh"
#include "engine/backend/cuda/kernels.h"

namespace bm::engine::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kFirstBits = 12;  // pass 0: sign, exponent and 3 mantissa bits
constexpr int kNextBits = 10;   // passes 1 and 2
constexpr int kFirstBins = 1 << kFirstBits;
constexpr int kNextBins = 1 << kNextBits;
static_assert(kFirstBits + 2 * kNextBits == 32);
static_assert(kFirstBins % kThreads == 0 && kNextBins % kThreads == 0);
constexpr uint32_t kListedBits = 0xffffffffu;  // a NaN; its key is 0
// Row splitting (few rows): at most kMaxSlices blocks per row (the merge holds every share's keys and ids in
// 32 KiB of shared memory), each over at least kMinSliceLength ids (below that a block's fixed work, clearing
// 4096 bins and three block scans, outweighs its reading).
constexpr int kMaxSlices = 64;
constexpr int64_t kMinSliceLength = 2048;

// Order-preserving map of a float onto uint32 (larger float, larger key); -0 maps with +0.
__device__ __forceinline__ uint32_t order_key(float x) {
  uint32_t u = __float_as_uint(x);
  if (u == 0x80000000u) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Bit j set: id first_id + j of a for_each_chunk chunk is allowed. Its ids share one mask word (4 ids from a
// multiple of 4, or 1), so this is one load per chunk; a chunk past the end (count 0) reads nothing.
__device__ __forceinline__ unsigned chunk_allowed(const uint32_t* mask, int64_t first_id, int count) {
  if (mask == nullptr || count == 0) return 0xfu;
  return (mask[first_id >> 5] >> (first_id & 31)) & 0xfu;
}

// Adds exp(x) to the running sum s, kept relative to the running maximum m (exp(m) * s is the sum so far).
// Equal values add 1 without subtracting (so -inf and +inf maxima stay defined); NaN poisons the sum.
__device__ __forceinline__ void lse_add(float& m, float& s, float x) {
  if (x > m) {
    s = s * expf(m - x) + 1.0f;
    m = x;
  } else if (x == m) {
    s += 1.0f;
  } else {
    s += expf(x - m);
  }
}

__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else if (m2 == m) {
    s += s2;
  } else {
    s += s2 * expf(m2 - m);
  }
}

// Calls f(first_id, values, count) for consecutive chunks of row[begin, end) (begin a multiple of 4, so that a
// chunk's ids share one mask word and the float4 alignment is the row's): each thread gets up to 4 consecutive
// elements (float4 loads when the row is 16-byte aligned), threads in id order, and every thread of the block makes
// the same number of calls (count 0 past the end), so f may synchronise the block. first_id is the id in the row.
template <typename F>
__device__ __forceinline__ void for_each_chunk(const float* row, int64_t begin, int64_t end, F&& f) {
  const float* part = row + begin;
  const int64_t n = end - begin;
  int64_t done = 0;
  if ((reinterpret_cast<uintptr_t>(part) & 15) == 0) {
    const int64_t num_vectors = n / 4;
    const float4* vectors = reinterpret_cast<const float4*>(part);
    for (int64_t base = 0; base < num_vectors; base += kThreads) {
      const int64_t v = base + threadIdx.x;
      float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      int count = 0;
      if (v < num_vectors) {
        const float4 q = vectors[v];
        x[0] = q.x;
        x[1] = q.y;
        x[2] = q.z;
        x[3] = q.w;
        count = 4;
      }
      f(begin + v * 4, x, count);
    }
    done = num_vectors * 4;
  }
  for (int64_t base = done; base < n; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int count = 0;
    if (i < n) {
      x[0] = part[i];
      count = 1;
    }
    f(begin + i, x, count);
  }
}

// Exclusive prefix sum of v over the block in thread order; *total gets the block's sum. All threads call it.
__device__ __forceinline__ int block_exclusive_sum(int v, int* scratch, int* total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int inclusive = v;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += t;
  }
  if (lane == 31) scratch[warp] = inclusive;
  __syncthreads();
  int before = 0, all = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int s = scratch[w];
    before += w < warp ? s : 0;
    all += s;
  }
  __syncthreads();  // scratch may be rewritten by the next call
  *total = all;
  return before + inclusive - v;
}

struct Pick {
  int bin;    // the bin holding the wanted-th largest counted key
  int above;  // counted keys in the bins above it
  int count;  // counted keys in it
};

// Over hist[0, num_bins) taken from the highest bin down: the bin holding the target-th largest key (1-based),
// target = min(wanted, total count), returned. Writes *pick (when target > 0) and synchronises the block.
__device__ int find_bin(const int* hist, int num_bins, int wanted, int* scratch, Pick* pick) {
  const int per_thread = num_bins / kThreads;
  const int top = num_bins - 1 - static_cast<int>(threadIdx.x) * per_thread;
  int local = 0;
  for (int j = 0; j < per_thread; ++j) local += hist[top - j];
  int total = 0;
  int above = block_exclusive_sum(local, scratch, &total);
  const int target = min(wanted, total);
  if (target > 0 && above < target && above + local >= target) {
    for (int j = 0; j < per_thread; ++j) {
      const int c = hist[top - j];
      if (above + c >= target) {
        *pick = Pick{top - j, above, c};
        break;
      }
      above += c;
    }
  }
  __syncthreads();
  return target;
}

// A row slice's share of the results, for the merge kernel: its real candidates (count <= k, best first, the
// same order as the final list) and its two sums in log-sum-exp form (max, sum relative to the max).
struct SlicePartial {
  int32_t count;
  float lse_m, lse_s, mass_m, mass_s;
  int32_t ids[kMaxTopCandidates];
  float values[kMaxTopCandidates];
};

// Steps 1-5 over ids [begin, end) of row r (begin a multiple of 4) by one block. With partial null the range is
// the whole row and the block writes the row's results; otherwise it writes the slice's share to *partial (only
// the listed ids inside the range are gathered and marked, so slices of a row touch disjoint parts of it and of
// listed_logits; the ids outside the vocabulary get NaN from the slice that starts at 0).
__device__ __forceinline__ void select_range(float* row, int64_t r, int64_t begin, int64_t end, int64_t vocab,
                                             const int32_t* listed_starts, const int32_t* listed_ids,
                                             int64_t num_listed, int32_t k, float* listed_logits, int32_t* cand_ids,
                                             float* cand_logits, float* log_sum_exp, const float* inverse_temperatures,
                                             float* tempered_lse, const uint32_t* mask, SlicePartial* partial) {
  __shared__ int hist[kFirstBins];
  __shared__ int scratch[kWarps];
  __shared__ float lse_m[kWarps];
  __shared__ float lse_s[kWarps];
  __shared__ float mass_m[kWarps];
  __shared__ float mass_s[kWarps];
  __shared__ Pick pick;
  __shared__ int num_taken;
  __shared__ uint32_t taken_key[kMaxTopCandidates];
  __shared__ int32_t taken_id[kMaxTopCandidates];
  __shared__ float taken_value[kMaxTopCandidates];

  const int tid = threadIdx.x;

  // 1. Listed ids: gather the raw values, then (after every gather of the row is done) mark their positions.
  // The caller validates starts and ids; out-of-range ones are clamped or skipped rather than faulting.
  const int64_t first = min(max(int64_t{listed_starts[r]}, int64_t{0}), num_listed);
  const int64_t last = min(max(int64_t{listed_starts[r + 1]}, first), num_listed);
  float m = -INFINITY, s = 0.0f;
  for (int64_t j = first + tid; j < last; j += kThreads) {
    const int64_t id = listed_ids[j];
    if (id >= begin && id < end) {
      const bool allowed = mask == nullptr || ((mask[id >> 5] >> (id & 31)) & 1u);
      listed_logits[j] = allowed ? row[id] : -INFINITY;
      if (allowed) lse_add(m, s, row[id]);
    } else if (begin == 0 && (id < 0 || id >= vocab)) {
      listed_logits[j] = NAN;
    }
  }
  for (int i = tid; i < kFirstBins; i += kThreads) hist[i] = 0;
  if (tid == 0) num_taken = 0;
  __syncthreads();
  for (int64_t j = first + tid; j < last; j += kThreads) {
    const int64_t id = listed_ids[j];
    if (id >= begin && id < end) row[id] = __uint_as_float(kListedBits);
  }
  __syncthreads();

  // 2. Log-sum-exp of the unlisted values (the listed ones are in m, s already), the tempered sum of the unlisted
  // ones alone (when wanted), and the first histogram.
  const bool wants_mass = tempered_lse != nullptr;
  const float inverse_t = wants_mass ? inverse_temperatures[r] : 1.0f;
  float mm = -INFINITY, ms = 0.0f;
  for_each_chunk(row, begin, end, [&](int64_t first_id, const float(&x)[4], int count) {
    const unsigned allowed = chunk_allowed(mask, first_id, count);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= count) break;
      const uint32_t key = ((allowed >> j) & 1u) ? order_key(x[j]) : 0u;
      if (key == 0) continue;  // listed or forbidden
      lse_add(m, s, x[j]);
      if (wants_mass) lse_add(mm, ms, x[j] * inverse_t);
      atomicAdd(&hist[key >> (32 - kFirstBits)], 1);
    }
  });
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
    lse_merge(mm, ms, __shfl_xor_sync(0xffffffffu, mm, offset), __shfl_xor_sync(0xffffffffu, ms, offset));
  }
  if (tid % 32 == 0) {
    lse_m[tid / 32] = m;
    lse_s[tid / 32] = s;
    mass_m[tid / 32] = mm;
    mass_s[tid / 32] = ms;
  }
  __syncthreads();  // also completes the histogram
  if (tid == 0) {
    for (int w = 1; w < kWarps; ++w) {
      lse_merge(m, s, lse_m[w], lse_s[w]);
      lse_merge(mm, ms, mass_m[w], mass_s[w]);
    }
    if (partial != nullptr) {
      partial->lse_m = m;
      partial->lse_s = s;
      partial->mass_m = mm;
      partial->mass_s = ms;
    } else {
      // Computed alongside the histogram pass at no extra read; written when the caller wants it.
      if (log_sum_exp != nullptr) log_sum_exp[r] = m + logf(s);  // -inf when the whole row is -inf
      if (wants_mass) tempered_lse[r] = mm + logf(ms);           // -inf when nothing is unlisted
    }
  }

  // 3. The k-th largest unlisted key, 12 + 10 + 10 bits at a time.
  const int kk = find_bin(hist, kFirstBins, k, scratch, &pick);  // real candidates: min(k, unlisted ids)
  if (kk > 0) {
    int shift = 32 - kFirstBits;
    uint32_t prefix = static_cast<uint32_t>(pick.bin) << shift;
    int remaining = kk - pick.above;  // still wanted from the keys whose bits above `shift` equal prefix's
    int group = pick.count;           // how many keys that is
    while (group != remaining && shift > 0) {
      const int filter_shift = shift;
      shift -= kNextBits;
      for (int i = tid; i < kNextBins; i += kThreads) hist[i] = 0;
      __syncthreads();
      const uint32_t want = prefix >> filter_shift;
      for_each_chunk(row, begin, end, [&](int64_t first_id, const float(&x)[4], int count) {
        const unsigned allowed = chunk_allowed(mask, first_id, count);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j >= count) break;
          const uint32_t key = ((allowed >> j) & 1u) ? order_key(x[j]) : 0u;
          if (key != 0 && (key >> filter_shift) == want) atomicAdd(&hist[(key >> shift) & (kNextBins - 1)], 1);
        }
      });
      __syncthreads();
      find_bin(hist, kNextBins, remaining, scratch, &pick);
      prefix |= static_cast<uint32_t>(pick.bin) << shift;
      remaining -= pick.above;
      group = pick.count;
    }

    // 4. Collect the kk candidates: keys above the group, then `remaining` keys of the group.
    const uint32_t group_key = prefix >> shift;
    auto take = [&](int slot, uint32_t key, int64_t id, float value) {
      if (slot < 0 || slot >= kMaxTopCandidates) return;  // cannot happen: the counts are exact
      taken_key[slot] = key;
      taken_id[slot] = static_cast<int32_t>(id);
      taken_value[slot] = value;
    };
    if (group == remaining) {
      // Every key of the group is wanted: no order needed, the sort below ranks them.
      for_each_chunk(row, begin, end, [&](int64_t first_id, const float(&x)[4], int count) {
        const unsigned allowed = chunk_allowed(mask, first_id, count);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j >= count) break;
          const uint32_t key = ((allowed >> j) & 1u) ? order_key(x[j]) : 0u;
          if (key != 0 && (key >> shift) >= group_key) take(atomicAdd(&num_taken, 1), key, first_id + j, x[j]);
        }
      });
    } else {
      // shift == 0 here: the group is exact ties at the k-th key and only the lowest ids are wanted. Their ranks
      // among the ties come from a block scan per chunk (chunks and the threads within them are in id order).
      const int num_above = kk - remaining;
      int ties_before = 0;
      for_each_chunk(row, begin, end, [&](int64_t first_id, const float(&x)[4], int count) {
        int ties = 0;
        unsigned tie_mask = 0;
        const unsigned allowed = chunk_allowed(mask, first_id, count);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (j >= count) break;
          const uint32_t key = ((allowed >> j) & 1u) ? order_key(x[j]) : 0u;
          if (key == 0 || key < group_key) continue;
          if (key > group_key) {
            take(atomicAdd(&num_taken, 1), key, first_id + j, x[j]);
          } else {
            tie_mask |= 1u << j;
            ++ties;
          }
        }
        if (ties_before >= remaining) return;  // block-uniform: every tie wanted is taken already
        int chunk_ties = 0;
        int rank = ties_before + block_exclusive_sum(ties, scratch, &chunk_ties);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if ((tie_mask >> j) & 1u) {
            if (rank < remaining) take(num_above + rank, group_key, first_id + j, x[j]);
            ++rank;
          }
        }
        ties_before += chunk_ties;
      });
    }
  }
  __syncthreads();

  // 5. Rank sort (key descending, id ascending; the pairs are distinct) and write; padding past kk (a slice's
  // share carries its count instead).
  int32_t* out_ids = partial != nullptr ? partial->ids : cand_ids + r * k;
  float* out_values = partial != nullptr ? partial->values : cand_logits + r * k;
  if (partial != nullptr && tid == 0) partial->count = kk;
  if (tid < k) {
    int64_t position = tid;
    int32_t id = -1;
    float value = -INFINITY;
    if (tid < kk) {
      const uint32_t key = taken_key[tid];
      id = taken_id[tid];
      value = taken_value[tid];
      int rank = 0;
      for (int j = 0; j < kk; ++j) {
        const uint32_t other = taken_key[j];
        rank += (other > key || (other == key && taken_id[j] < id)) ? 1 : 0;
      }
      position = rank;
    }
    out_ids[position] = id;
    out_values[position] = value;
  }
}

// The row's mask words, or null when the row is unconstrained. The caller validates mask rows; an out-of-range one
// leaves the row unconstrained rather than faulting.
__device__ __forceinline__ const uint32_t* row_mask(int64_t r, int64_t vocab, const int32_t* mask_rows,
                                                    const uint32_t* masks, int64_t num_masks) {
  if (mask_rows != nullptr && mask_rows[r] >= 0 && mask_rows[r] < num_masks)
    return masks + int64_t{mask_rows[r]} * ((vocab + 31) / 32);
  return nullptr;
}

// One block per row, the whole row (many rows: the rows alone fill the SMs).
__global__ void __launch_bounds__(kThreads)
    top_candidates_kernel(float* logits, int64_t vocab, const int32_t* listed_starts, const int32_t* listed_ids,
                          int64_t num_listed, int32_t k, float* listed_logits, int32_t* cand_ids, float* cand_logits,
                          float* log_sum_exp, const float* inverse_temperatures, float* tempered_lse,
                          const int32_t* mask_rows, const uint32_t* masks, int64_t num_masks) {
  const int64_t r = blockIdx.x;
  select_range(logits + r * vocab, r, 0, vocab, vocab, listed_starts, listed_ids, num_listed, k, listed_logits,
               cand_ids, cand_logits, log_sum_exp, inverse_temperatures, tempered_lse,
               row_mask(r, vocab, mask_rows, masks, num_masks), nullptr);
}

// Few rows: block (s, r) takes slice s of row r, ids [s * slice_length, (s + 1) * slice_length), and writes its
// share to partials[r * gridDim.x + s]; merge_candidates_kernel then combines a row's shares.
__global__ void __launch_bounds__(kThreads)
    slice_candidates_kernel(float* logits, int64_t vocab, int64_t slice_length, const int32_t* listed_starts,
                            const int32_t* listed_ids, int64_t num_listed, int32_t k, float* listed_logits,
                            const float* inverse_temperatures, float* tempered_lse, const int32_t* mask_rows,
                            const uint32_t* masks, int64_t num_masks, SlicePartial* partials) {
  const int64_t r = blockIdx.y;
  const int64_t begin = int64_t{blockIdx.x} * slice_length;
  const int64_t end = min(vocab, begin + slice_length);
  select_range(logits + r * vocab, r, begin, end, vocab, listed_starts, listed_ids, num_listed, k, listed_logits,
               nullptr, nullptr, nullptr, inverse_temperatures, tempered_lse,
               row_mask(r, vocab, mask_rows, masks, num_masks), partials + r * gridDim.x + blockIdx.x);
}

// One block per row: the row's k best among its slices' shares and its sums. Every candidate of the row's final
// list is among its slice's best k (fewer than k ids of its slice beat it), so the union of the shares holds the
// answer; a share's entry lands at its rank in the union, its position in its own (sorted) list plus, per other
// slice, how many entries there beat it (a binary search: key descending, id ascending, the final order). The
// ranks are distinct (ids are), so each of the first min(k, total) positions is written exactly once. The sums
// merge in slice order.
__global__ void __launch_bounds__(kThreads)
    merge_candidates_kernel(const SlicePartial* partials, int32_t slices, int32_t k, int32_t* cand_ids,
                            float* cand_logits, float* log_sum_exp, float* tempered_lse) {
  __shared__ uint32_t keys[kMaxSlices * kMaxTopCandidates];
  __shared__ int32_t ids[kMaxSlices * kMaxTopCandidates];
  __shared__ int counts[kMaxSlices];
  __shared__ int total;
  const int64_t r = blockIdx.x;
  const int tid = threadIdx.x;
  const SlicePartial* shares = partials + r * slices;
  for (int i = tid; i < slices * kMaxTopCandidates; i += kThreads) {
    const int a = i / kMaxTopCandidates, j = i % kMaxTopCandidates;
    if (j < shares[a].count) {
      keys[i] = order_key(shares[a].values[j]);
      ids[i] = shares[a].ids[j];
    }
  }
  for (int a = tid; a < slices; a += kThreads) counts[a] = shares[a].count;
  if (tid == 0) {
    float m = -INFINITY, s = 0.0f, mm = -INFINITY, ms = 0.0f;
    int sum = 0;
    for (int a = 0; a < slices; ++a) {
      lse_merge(m, s, shares[a].lse_m, shares[a].lse_s);
      lse_merge(mm, ms, shares[a].mass_m, shares[a].mass_s);
      sum += shares[a].count;
    }
    total = sum;
    if (log_sum_exp != nullptr) log_sum_exp[r] = m + logf(s);
    if (tempered_lse != nullptr) tempered_lse[r] = mm + logf(ms);
  }
  __syncthreads();
  for (int i = tid; i < slices * kMaxTopCandidates; i += kThreads) {
    const int a = i / kMaxTopCandidates, j = i % kMaxTopCandidates;
    if (j >= counts[a]) continue;
    const uint32_t key = keys[i];
    const int32_t id = ids[i];
    int rank = j;
    for (int b = 0; b < slices && rank < k; ++b) {
      if (b == a) continue;
      const uint32_t* b_keys = keys + b * kMaxTopCandidates;
      const int32_t* b_ids = ids + b * kMaxTopCandidates;
      int lo = 0, hi = counts[b];
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        const bool better = b_keys[mid] > key || (b_keys[mid] == key && b_ids[mid] < id);
        if (better) {
          lo = mid + 1;
        } else {
          hi = mid;
        }
      }
      rank += lo;
    }
    if (rank < k) {
      cand_ids[r * k + rank] = id;
      cand_logits[r * k + rank] = shares[a].values[j];
    }
  }
  for (int t = min(k, total) + tid; t < k; t += kThreads) {
    cand_ids[r * k + t] = -1;
    cand_logits[r * k + t] = -INFINITY;
  }
}

// Ids per slice: a multiple of 4 (chunks share a mask word and keep the row's float4 alignment).
int64_t slice_length_for(int64_t vocab, int32_t slices) {
  const int64_t length = (vocab + slices - 1) / slices;
  return (length + 3) / 4 * 4;
}

// Slices actually launched: the rounding up of the length may leave the last requested ones empty.
int64_t slices_launched(int64_t vocab, int32_t slices) {
  if (slices <= 1) return 1;
  const int64_t length = slice_length_for(vocab, slices);
  return (vocab + length - 1) / length;
}

}  // namespace

int32_t top_candidates_slices(int64_t rows, int64_t vocab, int32_t num_sms) {
  if (rows <= 0 || num_sms <= 0) return 1;
  const int64_t wanted = std::min({int64_t{kMaxSlices}, int64_t{num_sms} / rows, vocab / kMinSliceLength});
  return static_cast<int32_t>(std::max<int64_t>(wanted, 1));
}

int64_t top_candidates_workspace_bytes(int64_t rows, int64_t vocab, int32_t slices) {
  const int64_t launched = slices_launched(vocab, slices);
  return launched > 1 ? rows * launched * int64_t{sizeof(SlicePartial)} : 0;
}

void launch_top_candidates(float* logits, int64_t rows, int64_t vocab, const int32_t* listed_starts,
                           const int32_t* listed_ids, int64_t num_listed, int32_t k, float* listed_logits,
                           int32_t* cand_ids, float* cand_logits, float* log_sum_exp, const float* inverse_temperatures,
                           float* tempered_lse, const int32_t* mask_rows, const uint32_t* masks, int64_t num_masks,
                           int32_t slices, void* workspace, int64_t workspace_bytes, cudaStream_t stream) {
  BM_CHECK(rows >= 0 && rows <= int64_t{0x7fffffff} && vocab > 0 && vocab <= int64_t{0x7fffffff});
  BM_CHECK(k >= 1 && k <= kMaxTopCandidates && num_listed >= 0);
  BM_CHECK(logits != nullptr && listed_starts != nullptr && cand_ids != nullptr && cand_logits != nullptr);
  BM_CHECK(num_listed == 0 || (listed_ids != nullptr && listed_logits != nullptr));
  BM_CHECK((inverse_temperatures == nullptr) == (tempered_lse == nullptr));
  BM_CHECK((mask_rows == nullptr) == (masks == nullptr) && (masks == nullptr) == (num_masks == 0) && num_masks >= 0);
  BM_CHECK(slices >= 1 && slices <= kMaxSlices);
  if (rows == 0) return;
  const int64_t launched = slices_launched(vocab, slices);
  if (launched == 1) {
    top_candidates_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        logits, vocab, listed_starts, listed_ids, num_listed, k, listed_logits, cand_ids, cand_logits, log_sum_exp,
        inverse_temperatures, tempered_lse, mask_rows, masks, num_masks);
    BM_CUDA_CHECK_LAUNCH();
    return;
  }
  BM_CHECK(rows <= 65535 && workspace != nullptr &&
           workspace_bytes >= top_candidates_workspace_bytes(rows, vocab, slices));
  auto* partials = static_cast<SlicePartial*>(workspace);
  const dim3 grid(static_cast<unsigned>(launched), static_cast<unsigned>(rows));
  slice_candidates_kernel<<<grid, kThreads, 0, stream>>>(logits, vocab, slice_length_for(vocab, slices), listed_starts,
                                                         listed_ids, num_listed, k, listed_logits, inverse_temperatures,
                                                         tempered_lse, mask_rows, masks, num_masks, partials);
  BM_CUDA_CHECK_LAUNCH();
  merge_candidates_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      partials, static_cast<int32_t>(launched), k, cand_ids, cand_logits, log_sum_exp, tempered_lse);
  BM_CUDA_CHECK_LAUNCH();
}

}  // namespace bm::engine::cuda
