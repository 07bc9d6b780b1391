#pragma once
// bmserver's exit codes (documented in docs/cli.md).
namespace bm::cli {
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;         // the daemon refused or the operation failed
inline constexpr int kExitUsage = 2;          // bad flags or arguments
inline constexpr int kExitNoDaemon = 3;       // no daemon answered at the address tried
inline constexpr int kExitInterrupted = 130;  // Ctrl-C
}  // namespace bm::cli
