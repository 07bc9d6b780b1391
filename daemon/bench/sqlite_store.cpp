// The SQLite results store: one file, opened per call (the daemon runs few benchmarks; this keeps no handle
// on a file a user may move or delete between runs).
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/bench/results_schema.h"
#include "daemon/bench/results_store.h"

namespace bm::daemon::bench {
namespace {

class Db {
 public:
  ~Db() {
    if (db_) sqlite3_close(db_);
  }
  absl::Status open(const std::string& path, bool create) {
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path.c_str(), &db_, flags, nullptr) != SQLITE_OK)
      return absl::UnavailableError(absl::StrCat("cannot open the results database ", path, ": ", error()));
    sqlite3_busy_timeout(db_, 5000);
    return absl::OkStatus();
  }
  absl::Status exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      std::string text = message ? message : error();
      sqlite3_free(message);
      return absl::UnavailableError(absl::StrCat("the results database refused a statement: ", text));
    }
    return absl::OkStatus();
  }
  std::string error() const { return db_ ? sqlite3_errmsg(db_) : "out of memory"; }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) { sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteStore final : public ResultsStore {
 public:
  explicit SqliteStore(std::string path) : path_(std::move(path)) {}

  std::string describe() const override { return "SQLite " + path_; }
  int schema_version() const override { return version_; }

  absl::Status check() override {
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::path(path_).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (ec)
      return absl::UnavailableError(
          absl::StrCat("cannot create ", dir.string(), " for the results database: ", ec.message()));
    Db db;
    if (absl::Status s = db.open(path_, /*create=*/true); !s.ok()) return s;
    return migrate(db);
  }

  absl::Status upsert(const std::vector<bmserver::v1::BenchmarkResult>& results) override {
    Db db;
    // Not created here: a file that vanished since check() is the store going away, not a fresh start.
    if (absl::Status s = db.open(path_, /*create=*/false); !s.ok()) return s;
    if (absl::Status s = migrate(db); !s.ok()) return s;
    if (absl::Status s = db.exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    std::vector<std::string> placeholders;
    for (size_t i = 0; i < result_columns().size(); ++i) placeholders.push_back(absl::StrCat("?", i + 1));
    std::string sql = upsert_sql(placeholders);
    for (const auto& result : results) {
      Statement stmt(db.get(), sql);
      if (!stmt.get()) return rollback(db, db.error());
      std::vector<std::string> values = to_column_values(result);
      const std::vector<Column>& columns = result_columns();
      for (size_t i = 0; i < values.size(); ++i) {
        int at = static_cast<int>(i + 1);
        // Typed binds: SQLite's own text-to-REAL conversion may not round-trip the last digit.
        switch (columns[i].type) {
          case ColumnType::kReal:
            sqlite3_bind_double(stmt.get(), at, std::strtod(values[i].c_str(), nullptr));
            break;
          case ColumnType::kInteger:
            sqlite3_bind_int64(stmt.get(), at, std::strtoll(values[i].c_str(), nullptr, 10));
            break;
          case ColumnType::kText:
            sqlite3_bind_text(stmt.get(), at, values[i].data(), static_cast<int>(values[i].size()), SQLITE_TRANSIENT);
            break;
        }
      }
      if (sqlite3_step(stmt.get()) != SQLITE_DONE) return rollback(db, db.error());
    }
    if (absl::Status s = db.exec("COMMIT"); !s.ok()) return rollback(db, std::string(s.message()));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<bmserver::v1::BenchmarkResult>> list(const std::string& model_name) override {
    std::vector<bmserver::v1::BenchmarkResult> out;
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec)) return out;  // nothing measured yet
    Db db;
    if (absl::Status s = db.open(path_, /*create=*/false); !s.ok()) return s;
    if (absl::Status s = migrate(db); !s.ok()) return s;
    Statement stmt(db.get(), absl::StrReplaceAll(select_sql(!model_name.empty()), {{"$1", "?1"}}));
    if (!stmt.get()) return absl::UnavailableError(absl::StrCat("cannot read the results database: ", db.error()));
    if (!model_name.empty())
      sqlite3_bind_text(stmt.get(), 1, model_name.data(), static_cast<int>(model_name.size()), SQLITE_TRANSIENT);
    int num_columns = static_cast<int>(result_columns().size());
    int rc;
    while ((rc = sqlite3_step(stmt.get())) == SQLITE_ROW) {
      std::vector<std::optional<std::string>> values;
      for (int i = 0; i < num_columns; ++i) {
        if (sqlite3_column_type(stmt.get(), i) == SQLITE_FLOAT) {
          values.emplace_back(format_sql_double(sqlite3_column_double(stmt.get(), i)));
          continue;
        }
        const unsigned char* text = sqlite3_column_text(stmt.get(), i);
        if (text) {
          values.emplace_back(reinterpret_cast<const char*>(text));
        } else {
          values.emplace_back(std::nullopt);
        }
      }
      out.push_back(from_column_values(values));
    }
    if (rc != SQLITE_DONE)
      return absl::UnavailableError(absl::StrCat("cannot read the results database: ", db.error()));
    return out;
  }

 private:
  absl::Status rollback(Db& db, const std::string& why) {
    (void)db.exec("ROLLBACK");
    return absl::UnavailableError(
        absl::StrCat("cannot write the results to ", path_, ": ", why, " (nothing was stored)"));
  }

  absl::Status migrate(Db& db) {
    if (absl::Status s = db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); !s.ok())
      return absl::UnavailableError(absl::StrCat("cannot use the results database ", path_, ": ", s.message()));
    int current = 0;
    {
      Statement stmt(db.get(), "SELECT COALESCE(MAX(version), 0) FROM schema_version");
      if (stmt.get() && sqlite3_step(stmt.get()) == SQLITE_ROW) current = sqlite3_column_int(stmt.get(), 0);
    }
    std::vector<std::string> migrations = schema_migrations(SqlDialect::kSqlite);
    if (current > static_cast<int>(migrations.size()))
      return absl::FailedPreconditionError(absl::StrCat("the results database ", path_, " has schema version ", current,
                                                        ", newer than this bmserverd knows (", migrations.size(), ")"));
    for (int v = current + 1; v <= static_cast<int>(migrations.size()); ++v) {
      if (absl::Status s = db.exec("BEGIN IMMEDIATE"); !s.ok()) return s;
      absl::Status s = db.exec(migrations[v - 1]);
      if (s.ok()) s = db.exec(absl::StrCat("INSERT INTO schema_version (version) VALUES (", v, ")"));
      if (s.ok()) s = db.exec("COMMIT");
      if (!s.ok()) {
        (void)db.exec("ROLLBACK");
        return absl::UnavailableError(
            absl::StrCat("cannot migrate the results database ", path_, " to version ", v, ": ", s.message()));
      }
    }
    version_ = static_cast<int>(migrations.size());
    return absl::OkStatus();
  }

  std::string path_;
  int version_ = 0;
};

}  // namespace

std::unique_ptr<ResultsStore> make_sqlite_store(std::string path) {
  return std::make_unique<SqliteStore>(std::move(path));
}

}  // namespace bm::daemon::bench
