#pragma once
// Bounds on what one API request may ask for, so that no request can make the daemon spend memory or time out of
// proportion to its (already bounded) body. Each is enforced where the field is read, as a 400 that gives the
// numbers; docs/limits-and-security.md lists them. The per-server limits (connections, queue, buffers) are
// flags: see ApiServerOptions.
#include <cstddef>
#include <cstdint>

namespace bm::daemon::openai {

inline constexpr int32_t kMaxChoices = 128;           // n
inline constexpr size_t kMaxPrompts = 64;             // /v1/completions prompt lists
inline constexpr size_t kMaxStopStrings = 16;         // stop
inline constexpr size_t kMaxStopStringBytes = 1024;   // each stop string
inline constexpr size_t kMaxStopBytesTotal = 4096;    // all stop strings of a request together
inline constexpr size_t kMaxStopTokenIds = 1024;      // stop_token_ids
inline constexpr size_t kMaxLogitBiasEntries = 2048;  // logit_bias
inline constexpr size_t kMaxTools = 128;              // tools (OpenAI's own limit)
inline constexpr size_t kMaxMessages = 4096;          // messages in one chat request
inline constexpr size_t kMaxContentParts = 1024;      // content parts in one message
// One image or video, as fetched or decoded from a data: URL, before decoding: what a request body may carry at
// most (32 MiB), so a URL brings no more than a client could send.
inline constexpr size_t kMaxMediaBytes = size_t{32} << 20;

}  // namespace bm::daemon::openai
