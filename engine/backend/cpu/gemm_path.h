#pragma once
// The instruction paths of the packed-weight GEMM (packed_linear.cpp), chosen once per backend at run time.
// Every path reads the same packed layout; the F32 paths (avx512, avx2, scalar) give bit-identical results (one
// fused multiply-add chain per output, in k order), the bf16 path rounds the activations to bf16 first as vLLM's
// CPU build, oneDNN and llama.cpp do, so its results differ by that rounding. `auto` takes the bf16 path where the
// CPU has it (twice the multiply-adds per instruction: prefill is compute-bound) and the best F32 path elsewhere.
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace bm::engine::cpu {

enum class GemmPath {
  kAuto,        // the best path the CPU has (best_gemm_path)
  kAvx512Bf16,  // vdpbf16ps on bf16 activations, F32 accumulation
  kAvx512,      // AVX-512F fused multiply-adds on F32 activations
  kAvx2,        // AVX2 + FMA on F32 activations
  kScalar,      // plain C++ (std::fma), any CPU
};

std::string_view gemm_path_name(GemmPath path);
bool cpu_has_gemm_path(GemmPath path);
// The path kAuto resolves to, for dense and 4-bit layers alike: avx512-bf16 where the CPU has it, else
// best_f32_gemm_path() (docs/engine-backend.md "Numerics" has the tolerances each side is held to).
GemmPath best_gemm_path();
// The fastest F32-activation path present: the reference numerics (a forced avx512 / avx2 / scalar path).
GemmPath best_f32_gemm_path();
// Parses "auto", "f32" (best_f32_gemm_path: the reference numerics on any CPU), "avx512-bf16", "avx512", "avx2"
// or "scalar" and refuses, with one sentence, a name it does not know or a path this CPU lacks; kAuto and "f32"
// come back resolved.
absl::StatusOr<GemmPath> parse_gemm_path(std::string_view name);

}  // namespace bm::engine::cpu
