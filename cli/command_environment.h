#pragma once
// Sends the travelling variables of this command's environment with its request (common/command_env.h), so that
// `HF_ENDPOINT=https://hf-mirror.com bmserver chat download NAME` works as it did with the original.
namespace bmserver::v1 {
class StoreSelector;
}

namespace bm::cli {

void add_command_environment(bmserver::v1::StoreSelector& selector);

}  // namespace bm::cli
