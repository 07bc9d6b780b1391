#include "engine/backend/device_info.h"
namespace bm::engine {
DeviceInfo detect_devices() { return {}; }
std::string cuda_plugin_path() { return {}; }
}  // namespace bm::engine
