#include "cli/proto_json.h"

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

namespace bm::cli {
std::string to_json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}
}  // namespace bm::cli
