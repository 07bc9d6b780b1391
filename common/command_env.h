#pragma once
// The variables a `bmserver` command sends with its request so that they take effect for that command, as they
// did in the original (which ran in the caller's process): `HF_ENDPOINT=... bmserver chat download NAME`. The
// daemon's own values are the default. One list, read by the CLI (what to send) and the daemon (what to take).
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/store/store_roots.h"

namespace bm::common {

using CommandEnv = std::map<std::string, std::string>;

// HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME, MODELSCOPE_CACHE, MODELSCOPE_DOMAIN,
// MODELSCOPE_ENDPOINT, MODELSCOPE_API_TOKEN, CUDA_VISIBLE_DEVICES.
const std::vector<std::string>& command_env_names();
// The subset that says where models are stored: kept with a served model so a restart finds it again. (Tokens and
// endpoints are not: serving needs neither, and a token is not written to disk.)
bool is_store_location_variable(const std::string& name);

// INVALID_ARGUMENT naming the variable when a name is not in the list or a value is empty, longer than 4096 bytes
// or holds a control character.
absl::Status check_command_env(const CommandEnv& env);

// A GetEnv that answers from `env` first, then from this process's environment.
GetEnv overlay_env(CommandEnv env);

}  // namespace bm::common
