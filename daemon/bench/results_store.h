#pragma once
// Where benchmark results are kept: one interface over a SQLite file (default, in the daemon's state dir) and
// PostgreSQL (when a URL is given). Rows are upserted by the original's key.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bmserver/v1/benchmarks.pb.h"

namespace bm::daemon::bench {

class ResultsStore {
 public:
  virtual ~ResultsStore() = default;
  // "SQLite /path/benchmarks.db" or "PostgreSQL host:port/db" (never the password).
  virtual std::string describe() const = 0;
  // Connects and brings the schema to the newest version; a sentence saying why when it cannot.
  virtual absl::Status check() = 0;
  // All rows in one transaction: either every row is written or none.
  virtual absl::Status upsert(const std::vector<bmserver::v1::BenchmarkResult>& results) = 0;
  // model_name empty: every row.
  virtual absl::StatusOr<std::vector<bmserver::v1::BenchmarkResult>> list(const std::string& model_name) = 0;
  // The newest schema version applied (0 before check()).
  virtual int schema_version() const = 0;
};

std::unique_ptr<ResultsStore> make_sqlite_store(std::string path);
std::unique_ptr<ResultsStore> make_postgres_store(std::string url);

// postgresql+psycopg://…, postgresql+psycopg2://… and postgres://… become a libpq postgresql:// URI.
absl::StatusOr<std::string> normalize_postgres_url(const std::string& url);

// PostgreSQL when postgres_url (else the daemon's BMSERVER_POSTGRES_URL) is set, else
// <state_dir>/benchmarks.db. Does not connect; call check().
absl::StatusOr<std::unique_ptr<ResultsStore>> open_results_store(const std::string& state_dir,
                                                                 const std::string& postgres_url);

}  // namespace bm::daemon::bench
