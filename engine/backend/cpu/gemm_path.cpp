#include "engine/backend/cpu/gemm_path.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bm::engine::cpu {

std::string_view gemm_path_name(GemmPath path) {
  switch (path) {
    case GemmPath::kAuto:
      return "auto";
    case GemmPath::kAvx512Bf16:
      return "avx512-bf16";
    case GemmPath::kAvx512:
      return "avx512";
    case GemmPath::kAvx2:
      return "avx2";
    case GemmPath::kScalar:
      return "scalar";
  }
  return "?";
}

namespace {

#if defined(__x86_64__) && defined(__GNUC__)
// CPUID leaf 1, ECX bit 29. Read directly: clang 14 (the fuzzers' compiler) does not know "f16c" as a
// __builtin_cpu_supports feature.
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif

}  // namespace

bool cpu_has_gemm_path(GemmPath path) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  switch (path) {
    case GemmPath::kAvx512Bf16:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    case GemmPath::kAvx512:
      return __builtin_cpu_supports("avx512f");
    case GemmPath::kAvx2:
      // F16C widens F16 weights on this path; every AVX2 CPU has it, and x86-64-v3 names all three.
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case GemmPath::kAuto:
    case GemmPath::kScalar:
      return true;
  }
  return false;
#else
  return path == GemmPath::kAuto || path == GemmPath::kScalar;
#endif
}

GemmPath best_f32_gemm_path() {
  for (GemmPath path : {GemmPath::kAvx512, GemmPath::kAvx2}) {
    if (cpu_has_gemm_path(path)) return path;
  }
  return GemmPath::kScalar;
}

GemmPath best_gemm_path() {
  return cpu_has_gemm_path(GemmPath::kAvx512Bf16) ? GemmPath::kAvx512Bf16 : best_f32_gemm_path();
}

absl::StatusOr<GemmPath> parse_gemm_path(std::string_view name) {
  if (name == "f32") return best_f32_gemm_path();
  for (GemmPath path :
       {GemmPath::kAuto, GemmPath::kAvx512Bf16, GemmPath::kAvx512, GemmPath::kAvx2, GemmPath::kScalar}) {
    if (name != gemm_path_name(path)) continue;
    if (path == GemmPath::kAuto) return best_gemm_path();
    if (!cpu_has_gemm_path(path)) {
      return absl::FailedPreconditionError(absl::StrCat("the CPU GEMM path '", std::string(name),
                                                        "' needs instructions this CPU does not have; use auto"));
    }
    return path;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown CPU GEMM path '", std::string(name), "' (auto, f32, avx512-bf16, avx512, avx2 or scalar)"));
}

}  // namespace bm::engine::cpu
