// The PostgreSQL results store over libpqxx 6.4; one connection per call (a benchmark writes once at its end).
#include <pqxx/pqxx>

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/bench/results_schema.h"
#include "daemon/bench/results_store.h"

namespace bm::daemon::bench {
namespace {

// host:port/db of a postgresql:// URI, without user or password.
std::string redact(const std::string& url) {
  std::string rest = url.substr(url.find("://") + 3);
  if (size_t at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
  if (size_t q = rest.find('?'); q != std::string::npos) rest = rest.substr(0, q);
  return rest;
}

// libpq's messages end in a newline and may hold several lines; one line is enough for a person.
std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return line.empty() ? text : line;
}

class PostgresStore final : public ResultsStore {
 public:
  explicit PostgresStore(std::string url) : url_(std::move(url)) {}

  std::string describe() const override { return "PostgreSQL " + redact(url_); }
  int schema_version() const override { return version_; }

  absl::Status check() override {
    return guarded("cannot use", [&](pqxx::connection& c) { return migrate(c); });
  }

  absl::Status upsert(const std::vector<bmserver::v1::BenchmarkResult>& results) override {
    return guarded("cannot write the results to", [&](pqxx::connection& c) {
      if (absl::Status s = migrate(c); !s.ok()) return s;
      pqxx::work work(c);
      for (const auto& result : results) {
        std::vector<std::string> values;
        for (const std::string& v : to_column_values(result)) values.push_back(absl::StrCat("'", work.esc(v), "'"));
        work.exec(upsert_sql(values));
      }
      work.commit();  // nothing is visible unless every row made it
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<bmserver::v1::BenchmarkResult>> list(const std::string& model_name) override {
    std::vector<bmserver::v1::BenchmarkResult> out;
    absl::Status s = guarded("cannot read the results from", [&](pqxx::connection& c) {
      if (absl::Status m = migrate(c); !m.ok()) return m;
      pqxx::work work(c);
      std::string sql = select_sql(!model_name.empty());
      if (!model_name.empty()) sql = absl::StrReplaceAll(sql, {{"$1", absl::StrCat("'", work.esc(model_name), "'")}});
      pqxx::result rows = work.exec(sql);
      for (const auto& row : rows) {
        std::vector<std::optional<std::string>> values;
        for (const auto& field : row) {
          if (field.is_null()) {
            values.emplace_back(std::nullopt);
          } else {
            values.emplace_back(field.c_str());
          }
        }
        out.push_back(from_column_values(values));
      }
      work.commit();
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

 private:
  template <typename Fn>
  absl::Status guarded(const char* what, Fn&& fn) {
    try {
      pqxx::connection c(url_);
      return fn(c);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat(what, " the results database ", describe(), ": ", first_line(e.what()),
                                                 " (nothing was stored)"));
    }
  }

  absl::Status migrate(pqxx::connection& c) {
    std::vector<std::string> migrations = schema_migrations(SqlDialect::kPostgres);
    pqxx::work work(c);
    work.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    // Two daemons migrating one database at once must not both apply a step.
    work.exec("LOCK TABLE schema_version IN EXCLUSIVE MODE");
    int current = work.exec("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0].as<int>();
    if (current > static_cast<int>(migrations.size()))
      return absl::FailedPreconditionError(absl::StrCat("the results database ", describe(), " has schema version ",
                                                        current, ", newer than this bmserverd knows (",
                                                        migrations.size(), ")"));
    for (int v = current + 1; v <= static_cast<int>(migrations.size()); ++v) {
      work.exec(migrations[v - 1]);
      work.exec(absl::StrCat("INSERT INTO schema_version (version) VALUES (", v, ")"));
    }
    work.commit();
    version_ = static_cast<int>(migrations.size());
    return absl::OkStatus();
  }

  std::string url_;
  int version_ = 0;
};

}  // namespace

std::unique_ptr<ResultsStore> make_postgres_store(std::string url) {
  return std::make_unique<PostgresStore>(std::move(url));
}

}  // namespace bm::daemon::bench
