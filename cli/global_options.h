#pragma once
#include <string>

namespace bm::cli {

enum class OutputFormat { kTable, kJson };

// Options every command takes (set before or after the subcommand).
struct GlobalOptions {
  std::string daemon;  // --daemon ADDR; empty: BMSERVER_DAEMON, else the default sockets
  OutputFormat output = OutputFormat::kTable;
};

}  // namespace bm::cli
