#include "cli/command_environment.h"

#include <cstdlib>

#include "bmserver/v1/models.pb.h"
#include "common/command_env.h"

namespace bm::cli {

void add_command_environment(bmserver::v1::StoreSelector& selector) {
  for (const std::string& name : common::command_env_names()) {
    const char* value = std::getenv(name.c_str());
    if (value != nullptr && *value != '\0') (*selector.mutable_env())[name] = value;
  }
}

}  // namespace bm::cli
