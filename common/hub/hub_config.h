#pragma once
#include <string>

#include "common/store/store_roots.h"

namespace bm::common {

enum class HubKind { kHuggingFace, kModelScope };

// Where a hub is and how to authenticate, with the names of the variables that change them (error messages
// tell the user which knob to turn).
struct HubConfig {
  HubKind kind = HubKind::kHuggingFace;
  std::string endpoint;           // "https://huggingface.co", no trailing slash
  std::string token;              // empty: anonymous
  std::string endpoint_variable;  // "HF_ENDPOINT" | "MODELSCOPE_DOMAIN"
  std::string token_variable;     // "HF_TOKEN" | "MODELSCOPE_API_TOKEN"
  std::string other_hub_flag;     // "--hub ms" | "--hub hf"
};

// Hugging Face: HF_ENDPOINT (default https://huggingface.co); token from HF_TOKEN › HUGGING_FACE_HUB_TOKEN ›
// the file HF_TOKEN_PATH › $HF_HOME/token (huggingface_hub's order, minus OIDC and Colab).
HubConfig hf_config_from_env();
// ModelScope: MODELSCOPE_ENDPOINT (a URL) › MODELSCOPE_DOMAIN (a bare host, https:// prepended; a value with
// a scheme is taken as is) › www.modelscope.cn; token MODELSCOPE_API_TOKEN.
HubConfig ms_config_from_env();
// The same, reading the variables through `getenv` (a command's own values over the daemon's: command_env.h).
HubConfig hf_config_from_env(const GetEnv& getenv);
HubConfig ms_config_from_env(const GetEnv& getenv);
const char* hub_name(HubKind kind);

}  // namespace bm::common
