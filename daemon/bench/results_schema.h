#pragma once
// The results table, shared by the SQLite and PostgreSQL stores: its columns (the fields of
// bmserver.v1.BenchmarkResult, LatencyStats flattened as ttft_ms_p50 …), its versioned migrations, and the
// conversion between a result and one text value per column.
#include <optional>
#include <string>
#include <vector>

#include "bmserver/v1/benchmarks.pb.h"

namespace bm::daemon::bench {

inline constexpr const char* kResultsTable = "chat_benchmark_result";
inline constexpr int kNumKeyColumns = 7;  // GPU name, GPU count, version, model, P, C, concurrency (version 1)

// The key since version 3: the original's seven, the image workload (images per request, width, height; version 2)
// and the tensor-parallel size (version 3).
const std::vector<std::string>& key_columns();

enum class ColumnType { kText, kInteger, kReal };
enum class SqlDialect { kSqlite, kPostgres };

struct Column {
  std::string name;
  ColumnType type;
};

// Every column, key first, in table order.
const std::vector<Column>& result_columns();

// Migration i (1-based) brings the schema from version i − 1 to i. Frozen once released: add, never edit.
std::vector<std::string> schema_migrations(SqlDialect dialect);

// "INSERT … ON CONFLICT (key) DO UPDATE SET …" with `values` already rendered as SQL (placeholders or literals).
std::string upsert_sql(const std::vector<std::string>& values);
std::string select_sql(bool by_model);  // by_model: one placeholder for model_name

// Shortest text that reads back as the same double.
std::string format_sql_double(double value);

// One text per column; doubles are written shortest-exact so a read-back compares equal.
std::vector<std::string> to_column_values(const bmserver::v1::BenchmarkResult& result);
// NULL (nullopt) leaves a field at its default.
bmserver::v1::BenchmarkResult from_column_values(const std::vector<std::optional<std::string>>& values);

}  // namespace bm::daemon::bench
