#include "daemon/bench/results_schema.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"

namespace bm::daemon::bench {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Leaf fields in column order: (the message holding it, the field).
struct Leaf {
  const FieldDescriptor* parent = nullptr;  // the LatencyStats field, or null for a top-level field
  const FieldDescriptor* field = nullptr;
};

const std::vector<Leaf>& leaves() {
  static const std::vector<Leaf> all = [] {
    std::vector<Leaf> out;
    const Descriptor* d = bmserver::v1::BenchmarkResult::descriptor();
    for (int i = 0; i < d->field_count(); ++i) {
      const FieldDescriptor* f = d->field(i);
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        const Descriptor* sub = f->message_type();
        for (int j = 0; j < sub->field_count(); ++j) out.push_back({f, sub->field(j)});
      } else {
        out.push_back({nullptr, f});
      }
    }
    return out;
  }();
  return all;
}

}  // namespace

std::string format_sql_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

namespace {

const char* sql_type(ColumnType type, SqlDialect dialect) {
  switch (type) {
    case ColumnType::kText:
      return "TEXT";
    case ColumnType::kInteger:
      return dialect == SqlDialect::kPostgres ? "BIGINT" : "INTEGER";
    case ColumnType::kReal:
      return dialect == SqlDialect::kPostgres ? "DOUBLE PRECISION" : "REAL";
  }
  return "TEXT";
}

// Version 2's key, frozen with its migration (key_columns() is the newest).
const std::vector<std::string>& version2_key() {
  static const std::vector<std::string> keys = {
      "nvidia_device_name",    "nvidia_device_count", "bmserver_version",  "model_name",  "num_prompt_tokens",
      "num_completion_tokens", "num_requests",        "images_per_prompt", "image_width", "image_height"};
  return keys;
}

// SQLite cannot change a primary key in place: a migration builds the new table (`defs`), copies the columns the
// old one had (`copied`), and swaps the two.
std::string sqlite_rebuild(const std::string& suffix, const std::vector<std::string>& defs,
                           const std::vector<std::string>& copied) {
  const std::string rebuilt = absl::StrCat(kResultsTable, suffix);
  const std::string names = absl::StrJoin(copied, ", ");
  return absl::StrCat("CREATE TABLE ", rebuilt, " (\n  ", absl::StrJoin(defs, ",\n  "), "\n);\n", "INSERT INTO ",
                      rebuilt, " (", names, ") SELECT ", names, " FROM ", kResultsTable, ";\n", "DROP TABLE ",
                      kResultsTable, ";\n", "ALTER TABLE ", rebuilt, " RENAME TO ", kResultsTable);
}

}  // namespace

const std::vector<Column>& result_columns() {
  static const std::vector<Column> columns = [] {
    std::vector<Column> out;
    for (const Leaf& leaf : leaves()) {
      std::string name = leaf.parent ? absl::StrCat(leaf.parent->name(), "_", leaf.field->name()) : leaf.field->name();
      ColumnType type = ColumnType::kText;
      switch (leaf.field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
        case FieldDescriptor::CPPTYPE_INT64:
        case FieldDescriptor::CPPTYPE_UINT32:
        case FieldDescriptor::CPPTYPE_UINT64:
        case FieldDescriptor::CPPTYPE_BOOL:
          type = ColumnType::kInteger;
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
        case FieldDescriptor::CPPTYPE_FLOAT:
          type = ColumnType::kReal;
          break;
        default:
          type = ColumnType::kText;
          break;
      }
      out.push_back({name, type});
    }
    return out;
  }();
  return columns;
}

const std::vector<std::string>& key_columns() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out = version2_key();
    out.push_back("tensor_parallel_size");
    return out;
  }();
  return keys;
}

std::vector<std::string> schema_migrations(SqlDialect dialect) {
  // Migration 1 is written out (not derived from the proto) so that a later field cannot silently change it;
  // result_columns_test checks that the table and the proto agree.
  static const char* kVersion1Columns[][2] = {{"nvidia_device_name", "T"},
                                              {"nvidia_device_count", "I"},
                                              {"bmserver_version", "T"},
                                              {"model_name", "T"},
                                              {"num_prompt_tokens", "I"},
                                              {"num_completion_tokens", "I"},
                                              {"num_requests", "I"},
                                              {"nvidia_driver_version", "T"},
                                              {"engine_name", "T"},
                                              {"engine_version", "T"},
                                              {"backend", "T"},
                                              {"model_modal", "T"},
                                              {"model_series", "T"},
                                              {"model_size", "R"},
                                              {"model_quant", "T"},
                                              {"model_tool_call", "T"},
                                              {"model_reasoning", "T"},
                                              {"model_repo_id", "T"},
                                              {"seed", "I"},
                                              {"serve_options", "T"},
                                              {"max_cache_tokens", "I"},
                                              {"max_num_seqs", "I"},
                                              {"max_model_len", "I"},
                                              {"max_requests", "I"},
                                              {"request_throughput_min", "R"},
                                              {"completion_token_throughput", "R"},
                                              {"total_token_throughput", "R"},
                                              {"mean_latency", "R"},
                                              {"mean_ttft_ms", "R"},
                                              {"mean_tpot_ms", "R"},
                                              {"num_completed", "I"},
                                              {"num_errors", "I"},
                                              {"duration_s", "R"},
                                              {"request_throughput", "R"},
                                              {"ttft_ms_mean", "R"},
                                              {"ttft_ms_p50", "R"},
                                              {"ttft_ms_p90", "R"},
                                              {"ttft_ms_p99", "R"},
                                              {"tpot_ms_mean", "R"},
                                              {"tpot_ms_p50", "R"},
                                              {"tpot_ms_p90", "R"},
                                              {"tpot_ms_p99", "R"},
                                              {"itl_ms_mean", "R"},
                                              {"itl_ms_p50", "R"},
                                              {"itl_ms_p90", "R"},
                                              {"itl_ms_p99", "R"},
                                              {"e2el_ms_mean", "R"},
                                              {"e2el_ms_p50", "R"},
                                              {"e2el_ms_p90", "R"},
                                              {"e2el_ms_p99", "R"},
                                              {"peak_kv_usage", "R"},
                                              {"first_error", "T"},
                                              {"created_at", "T"}};
  std::vector<std::string> defs, keys;
  int index = 0;
  for (const auto& c : kVersion1Columns) {
    ColumnType type = c[1][0] == 'T' ? ColumnType::kText : c[1][0] == 'I' ? ColumnType::kInteger : ColumnType::kReal;
    defs.push_back(absl::StrCat(c[0], " ", sql_type(type, dialect), " NOT NULL"));
    if (index++ < kNumKeyColumns) keys.push_back(c[0]);
  }
  defs.push_back(absl::StrCat("PRIMARY KEY (", absl::StrJoin(keys, ", "), ")"));
  std::vector<std::string> migrations = {
      absl::StrCat("CREATE TABLE ", kResultsTable, " (\n  ", absl::StrJoin(defs, ",\n  "), "\n)")};

  // Version 2, the image workload: four columns, three of them in the key. Rows of version 1 are text runs, so
  // they get 0 (the value a text run stores). SQLite cannot change a primary key in place: the table is rebuilt
  // (its documented procedure: create, copy, drop, rename) in the migration's transaction; PostgreSQL swaps the
  // constraint.
  static const char* kVersion2Columns[] = {"images_per_prompt", "image_width", "image_height", "num_image_tokens"};
  const char* integer = sql_type(ColumnType::kInteger, dialect);
  std::vector<std::string> v3_defs, v2_names;  // SQLite: version 2's table, for version 3's rebuild
  if (dialect == SqlDialect::kPostgres) {
    std::vector<std::string> steps;
    for (const char* c : kVersion2Columns)
      steps.push_back(
          absl::StrCat("ALTER TABLE ", kResultsTable, " ADD COLUMN ", c, " ", integer, " NOT NULL DEFAULT 0"));
    steps.push_back(absl::StrCat("ALTER TABLE ", kResultsTable, " DROP CONSTRAINT ", kResultsTable, "_pkey"));
    steps.push_back(
        absl::StrCat("ALTER TABLE ", kResultsTable, " ADD PRIMARY KEY (", absl::StrJoin(version2_key(), ", "), ")"));
    migrations.push_back(absl::StrJoin(steps, ";\n"));
  } else {
    std::vector<std::string> v2_defs(defs.begin(), defs.end() - 1), old_names;  // without version 1's key
    for (const auto& c : kVersion1Columns) old_names.push_back(c[0]);
    for (const char* c : kVersion2Columns) v2_defs.push_back(absl::StrCat(c, " ", integer, " NOT NULL DEFAULT 0"));
    v2_defs.push_back(absl::StrCat("PRIMARY KEY (", absl::StrJoin(version2_key(), ", "), ")"));
    migrations.push_back(sqlite_rebuild("_v2", v2_defs, old_names));

    // Version 3 (below) rebuilds again, from version 2's columns.
    v3_defs.assign(v2_defs.begin(), v2_defs.end() - 1);
    v2_names = old_names;
    for (const char* c : kVersion2Columns) v2_names.push_back(c);
  }

  // Version 3, tensor parallelism: tensor_parallel_size, in the key (CPU ranks leave nvidia_device_count at 0, so
  // without it a two-rank CPU run would overwrite the one-rank run of the same P, C and concurrency). Rows of
  // earlier versions get 1: the benchmark did not record the size before, and one rank is what nearly all were.
  const std::string v3_column = absl::StrCat("tensor_parallel_size ", integer, " NOT NULL DEFAULT 1");
  if (dialect == SqlDialect::kPostgres) {
    migrations.push_back(absl::StrCat("ALTER TABLE ", kResultsTable, " ADD COLUMN ", v3_column, ";\n", "ALTER TABLE ",
                                      kResultsTable, " DROP CONSTRAINT ", kResultsTable, "_pkey;\n", "ALTER TABLE ",
                                      kResultsTable, " ADD PRIMARY KEY (", absl::StrJoin(key_columns(), ", "), ")"));
  } else {
    v3_defs.push_back(v3_column);
    v3_defs.push_back(absl::StrCat("PRIMARY KEY (", absl::StrJoin(key_columns(), ", "), ")"));
    migrations.push_back(sqlite_rebuild("_v3", v3_defs, v2_names));
  }
  return migrations;
}

std::string upsert_sql(const std::vector<std::string>& values) {
  const std::vector<Column>& columns = result_columns();
  BM_CHECK(values.size() == columns.size());
  const std::vector<std::string>& keys = key_columns();
  std::vector<std::string> names, updates;
  for (size_t i = 0; i < columns.size(); ++i) {
    names.push_back(columns[i].name);
    if (std::find(keys.begin(), keys.end(), columns[i].name) == keys.end()) {
      updates.push_back(absl::StrCat(columns[i].name, " = excluded.", columns[i].name));
    }
  }
  return absl::StrCat("INSERT INTO ", kResultsTable, " (", absl::StrJoin(names, ", "), ") VALUES (",
                      absl::StrJoin(values, ", "), ") ON CONFLICT (", absl::StrJoin(keys, ", "), ") DO UPDATE SET ",
                      absl::StrJoin(updates, ", "));
}

std::string select_sql(bool by_model) {
  std::vector<std::string> names;
  for (const Column& c : result_columns()) names.push_back(c.name);
  return absl::StrCat("SELECT ", absl::StrJoin(names, ", "), " FROM ", kResultsTable,
                      by_model ? " WHERE model_name = $1" : "",
                      " ORDER BY model_name, nvidia_device_name, nvidia_device_count, tensor_parallel_size, "
                      "bmserver_version, "
                      "num_prompt_tokens, num_completion_tokens, images_per_prompt, image_width, image_height, "
                      "num_requests");
}

std::vector<std::string> to_column_values(const bmserver::v1::BenchmarkResult& result) {
  std::vector<std::string> out;
  for (const Leaf& leaf : leaves()) {
    const Message& holder = leaf.parent ? result.GetReflection()->GetMessage(result, leaf.parent) : result;
    const Reflection* r = holder.GetReflection();
    const FieldDescriptor* f = leaf.field;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        out.push_back(std::to_string(r->GetInt32(holder, f)));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        out.push_back(std::to_string(r->GetInt64(holder, f)));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        out.push_back(format_sql_double(r->GetDouble(holder, f)));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        out.push_back(r->GetString(holder, f));
        break;
      default:
        BM_CHECK(false && "BenchmarkResult holds a field type the store does not map");
    }
  }
  return out;
}

bmserver::v1::BenchmarkResult from_column_values(const std::vector<std::optional<std::string>>& values) {
  bmserver::v1::BenchmarkResult result;
  const std::vector<Leaf>& all = leaves();
  BM_CHECK(values.size() == all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (!values[i]) continue;
    const Leaf& leaf = all[i];
    Message* holder = leaf.parent ? result.GetReflection()->MutableMessage(&result, leaf.parent) : &result;
    const Reflection* r = holder->GetReflection();
    const std::string& text = *values[i];
    switch (leaf.field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        r->SetInt32(holder, leaf.field, static_cast<int32_t>(std::strtoll(text.c_str(), nullptr, 10)));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        r->SetInt64(holder, leaf.field, std::strtoll(text.c_str(), nullptr, 10));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        r->SetDouble(holder, leaf.field, std::strtod(text.c_str(), nullptr));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        r->SetString(holder, leaf.field, text);
        break;
      default:
        BM_CHECK(false && "BenchmarkResult holds a field type the store does not map");
    }
  }
  return result;
}

}  // namespace bm::daemon::bench
