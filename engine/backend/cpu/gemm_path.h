#pragma once
// The instruction paths of the packed-weight GEMM (packed_linear.cpp), chosen once per backend at run time.
// Every path reads the same packed layout; the F32 paths (avx512, avx2, scalar) give bit-identical results (one
// fused multiply-add chain per output, in k order), the bf16 path rounds the activations to bf16 first as vLLM's
// CPU build and oneDNN do, so its results differ by that rounding.
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
// The fastest F32-activation path present (see docs/engine-backend.md for why bf16 activations are opt-in).
GemmPath best_gemm_path();
// The path 4-bit GPTQ/AWQ layers take under kAuto: avx512-bf16 where the CPU has it. Weight-only quantization is
// W4A16 — 16-bit activations, as every GPU kernel of the family runs it — and at batch 1 the F32 kernel is
// compute-bound (docs/quantization.md has the figures), so quantized layers do not wait for the dense opt-in.
GemmPath best_quantized_gemm_path();
// Parses "auto", "avx512-bf16", "avx512", "avx2" or "scalar" and refuses, with one sentence, a name it does not
// know or a path this CPU lacks; kAuto comes back resolved.
absl::StatusOr<GemmPath> parse_gemm_path(std::string_view name);

}  // namespace bm::engine::cpu
