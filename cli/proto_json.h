#pragma once
#include <string>

namespace google::protobuf {
class Message;
}

namespace bm::cli {
// A response as JSON for `-o json`: proto field names, every field present, 2-space indent.
std::string to_json(const google::protobuf::Message& message);
}  // namespace bm::cli
