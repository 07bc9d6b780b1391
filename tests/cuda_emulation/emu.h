#pragma once
// Host SIMT emulator: every CUDA thread of a block is a fiber (ucontext) and only ONE runs at a time (cooperative
// scheduler): a thread runs until it reaches a sync point (__syncthreads, __syncwarp, shuffle, wmma op, the mma and
// ldmatrix of inc/engine/backend/cuda/warp_mma.cuh), then the next runnable thread (order: EMU_ORDER=fwd|rev|rand)
// runs. Results that depend on the order expose races; a barrier no
// thread can pass is reported as a deadlock.
//
// EMU_SYNC=explicit: only __syncthreads and __syncwarp (and shuffles, which must meet to exchange values) are sync
// points; the WMMA stand-in's loads and stores (inc/mma.h) stop being warp barriers. On the hardware a
// load_matrix_sync/store_matrix_sync orders nothing between lanes: a lane reading what other lanes wrote (a tile
// stored by store_matrix_sync, or plain stores before a load_matrix_sync) needs a __syncwarp. In the default mode
// the stand-in's barriers hide such a missing __syncwarp; in this mode the lanes run past those calls without
// waiting, so the reads see the stale values (in forward and reverse order alike) and the result mismatches.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <vector_functions.h>
#include <vector_types.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <type_traits>
#include <vector>
#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#undef __align__
#undef __shared__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static

// Only one CUDA thread runs at a time, so the built-in indices are plain globals that the scheduler sets on every
// switch.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

// Every CUDA thread of the current block is a user-level context (ucontext fiber) with its own stack; the stacks
// are allocated once (lazily committed, with a guard page) and reused by every block.
struct EmuSched {
  static constexpr size_t kStackBytes = 256 * 1024;
  int n = 0;
  std::vector<int> state;  // 0 ready, 1 block barrier, 2 warp barrier, 3 done
  std::vector<ucontext_t> ctx;
  std::vector<char*> stacks;
  ucontext_t main_ctx;
  const std::function<void()>* fn = nullptr;
  int current = -1;
  std::mt19937 rng{12345};
  int mode = 0;
  long barrier_after_exit = 0;
};
inline EmuSched g_s;
inline long g_emu_switches = 0;

// The next thread to run: the first ready one (fwd), the last (rev) or a random one (rand). No allocation: this
// runs at every switch, and shuffle-heavy kernels switch millions of times.
inline int emu_pick() {
  auto& s = g_s;
  if (s.mode == 0) {
    for (int i = 0; i < s.n; ++i)
      if (s.state[i] == 0) return i;
    return -1;
  }
  if (s.mode == 1) {
    for (int i = s.n - 1; i >= 0; --i)
      if (s.state[i] == 0) return i;
    return -1;
  }
  int ready = 0;
  for (int i = 0; i < s.n; ++i) ready += s.state[i] == 0;
  if (ready == 0) return -1;
  int k = static_cast<int>(s.rng() % static_cast<unsigned>(ready));
  for (int i = 0; i < s.n; ++i)
    if (s.state[i] == 0 && k-- == 0) return i;
  return -1;
}
inline void emu_check_barriers() {
  auto& s = g_s;
  // block barrier
  bool any1 = false, all = true, anydone = false;
  for (int i = 0; i < s.n; ++i) {
    if (s.state[i] == 1)
      any1 = true;
    else if (s.state[i] == 3)
      anydone = true;
    else
      all = false;
  }
  if (any1 && all) {
    if (anydone) ++s.barrier_after_exit;
    for (int i = 0; i < s.n; ++i)
      if (s.state[i] == 1) s.state[i] = 0;
  }
  for (int w = 0; w * 32 < s.n; ++w) {
    bool any2 = false, allw = true;
    for (int i = w * 32; i < std::min(s.n, w * 32 + 32); ++i) {
      if (s.state[i] == 2)
        any2 = true;
      else if (s.state[i] != 3)
        allw = false;
    }
    if (any2 && allw)
      for (int i = w * 32; i < std::min(s.n, w * 32 + 32); ++i)
        if (s.state[i] == 2) s.state[i] = 0;
  }
}
inline void emu_set_thread(int i) {
  g_s.current = i;
  threadIdx =
      uint3{unsigned(i % blockDim.x), unsigned((i / blockDim.x) % blockDim.y), unsigned(i / (blockDim.x * blockDim.y))};
}
// Called by thread `self` at a sync point (or when it has finished, state 3): runs the next runnable thread.
inline void emu_switch(int self) {
  auto& s = g_s;
  emu_check_barriers();
  const int next = emu_pick();
  if (next < 0) {
    bool alldone = true;
    for (int i = 0; i < s.n; ++i)
      if (s.state[i] != 3) alldone = false;
    if (alldone) {
      swapcontext(&s.ctx[self], &s.main_ctx);
      return;
    }  // never resumed
    std::fprintf(stderr, "EMU DEADLOCK: block (%u,%u,%u) states:", blockIdx.x, blockIdx.y, blockIdx.z);
    for (int i = 0; i < s.n; ++i) std::fprintf(stderr, " %d", s.state[i]);
    std::fprintf(stderr, "\n");
    std::abort();
  }
  if (next == self) return;
  ++g_emu_switches;
  emu_set_thread(next);
  swapcontext(&s.ctx[self], &s.ctx[next]);
}
inline void emu_thread_entry(int i) {
  (*g_s.fn)();
  g_s.state[i] = 3;
  emu_switch(i);
  std::abort();  // unreachable: a finished thread is never resumed
}
inline int emu_tid() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
inline void __syncthreads() {
  int t = emu_tid();
  g_s.state[t] = 1;
  emu_switch(t);
}
inline void emu_warp_barrier() {
  int t = emu_tid();
  g_s.state[t] = 2;
  emu_switch(t);
}
inline void __syncwarp(unsigned = 0xffffffffu) {
  emu_warp_barrier();
}

inline uint64_t g_warp_buf[32][32];
template <class T>
T emu_shfl(T v, int src) {
  static_assert(sizeof(T) <= 8);
  const int t = emu_tid(), lane = t % 32, warp = t / 32;
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  g_warp_buf[warp][lane] = b;
  emu_warp_barrier();
  uint64_t o = g_warp_buf[warp][src & 31];
  emu_warp_barrier();
  T r;
  std::memcpy(&r, &o, sizeof r);
  return r;
}
inline void emu_mask(unsigned m) {
  if (m != 0xffffffffu) {
    std::fprintf(stderr, "EMU: partial shuffle mask %x\n", m);
    std::abort();
  }
}
template <class T>
T __shfl_xor_sync(unsigned m, T v, int off, int w = 32) {
  emu_mask(m);
  return emu_shfl(v, (emu_tid() % 32) ^ off);
}
template <class T>
T __shfl_sync(unsigned m, T v, int src, int w = 32) {
  emu_mask(m);
  return emu_shfl(v, src);
}
template <class T>
T __shfl_down_sync(unsigned m, T v, unsigned off, int w = 32) {
  emu_mask(m);
  const int lane = emu_tid() % 32;
  return emu_shfl(v, lane + int(off) < 32 ? lane + int(off) : lane);
}
template <class T>
T __shfl_up_sync(unsigned m, T v, unsigned off, int w = 32) {
  emu_mask(m);
  const int lane = emu_tid() % 32;
  return emu_shfl(v, lane >= int(off) ? lane - int(off) : lane);
}

// single runner => plain ops are atomic
inline int atomicAdd(int* p, int v) {
  int o = *p;
  *p = o + v;
  return o;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  unsigned o = *p;
  *p = o + v;
  return o;
}
inline float atomicAdd(float* p, float v) {
  float o = *p;
  *p = o + v;
  return o;
}
inline int atomicMax(int* p, int v) {
  int o = *p;
  *p = std::max(o, v);
  return o;
}
inline uint32_t __float_as_uint(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline int __float_as_int(float f) {
  int u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __int_as_float(int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Byte i of the result is byte (s >> 4i) & 7 of the 8 bytes {y:x} (x's bytes 0-3, y's 4-7).
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t bytes = (uint64_t{y} << 32) | x;
  unsigned result = 0;
  for (int i = 0; i < 4; ++i) result |= static_cast<unsigned>((bytes >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return result;
}
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float __fdividef(float a, float b) {
  return a / b;
}
template <class T>
T __ldg(const T* p) {
  return *p;
}
template <class A, class B>
auto min(A a, B b) {
  static_assert(std::is_same_v<A, B>, "min of mixed types");
  return a < b ? a : b;
}
template <class A, class B>
auto max(A a, B b) {
  static_assert(std::is_same_v<A, B>, "max of mixed types");
  return a > b ? a : b;
}

alignas(256) inline unsigned char g_dyn_smem[256 * 1024];

// EMU_SYNC=explicit (see the top of this file); tests may also set it directly.
inline bool& emu_explicit_sync() {
  static bool explicit_sync = [] {
    const char* e = std::getenv("EMU_SYNC");
    return e != nullptr && std::strcmp(e, "explicit") == 0;
  }();
  return explicit_sync;
}
// A warp-collective call's implicit barrier (WMMA stand-in): none in the EMU_SYNC=explicit mode.
inline void emu_collective_barrier() {
  if (!emu_explicit_sync()) emu_warp_barrier();
}

inline bool emu_verbose = false;
inline void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, const std::function<void()>& fn) {
  static int mode = [] {
    const char* e = std::getenv("EMU_ORDER");
    return !e ? 0 : !strcmp(e, "rev") ? 1 : !strcmp(e, "rand") ? 2 : 0;
  }();
  const int n = block.x * block.y * block.z;
  if (n <= 0 || n > 1024 || smem > sizeof g_dyn_smem) {
    std::fprintf(stderr, "EMU bad launch\n");
    std::abort();
  }
  gridDim = grid;
  blockDim = block;
  auto& s = g_s;
  while (int(s.stacks.size()) < n) {
    void* p = mmap(nullptr, EmuSched::kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
      std::perror("EMU mmap");
      std::abort();
    }
    mprotect(p, 4096, PROT_NONE);  // guard page: a stack overflow faults instead of corrupting a neighbour
    s.stacks.push_back(static_cast<char*>(p));
  }
  s.ctx.resize(n);
  s.fn = &fn;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        s.n = n;
        s.mode = mode;
        s.state.assign(n, 0);
        blockIdx = uint3{bx, by, bz};
        std::memset(g_dyn_smem, 0xff, smem);  // poison: NaN floats
        for (int i = 0; i < n; ++i) {
          getcontext(&s.ctx[i]);
          s.ctx[i].uc_stack.ss_sp = s.stacks[i];
          s.ctx[i].uc_stack.ss_size = EmuSched::kStackBytes;
          s.ctx[i].uc_link = &s.main_ctx;
          makecontext(&s.ctx[i], reinterpret_cast<void (*)()>(&emu_thread_entry), 1, i);
        }
        const int first = emu_pick();
        emu_set_thread(first);
        swapcontext(&s.main_ctx, &s.ctx[first]);
      }
  s.fn = nullptr;
}
inline void emu_launch(dim3 grid, dim3 block, const std::function<void()>& fn) {
  emu_launch(grid, block, 0, nullptr, fn);
}
