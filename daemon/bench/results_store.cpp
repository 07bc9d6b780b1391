#include "daemon/bench/results_store.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bm::daemon::bench {

absl::StatusOr<std::string> normalize_postgres_url(const std::string& url) {
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("the PostgreSQL URL '", url, "' is not a URL like postgresql://user:pass@host:5432/db"));
  std::string scheme = url.substr(0, scheme_end);
  std::string driver;
  if (size_t plus = scheme.find('+'); plus != std::string::npos) {
    driver = scheme.substr(plus + 1);
    scheme = scheme.substr(0, plus);
  }
  if (scheme != "postgresql" && scheme != "postgres")
    return absl::InvalidArgumentError(absl::StrCat("the database URL scheme '", url.substr(0, scheme_end),
                                                   "' is not PostgreSQL (use postgresql://…)"));
  // SQLAlchemy names the Python driver after '+'; libpq needs none of it.
  if (!driver.empty() && driver != "psycopg" && driver != "psycopg2" && driver != "asyncpg" && driver != "pg8000")
    return absl::InvalidArgumentError(absl::StrCat("unknown PostgreSQL driver '", driver, "' in the database URL"));
  return absl::StrCat("postgresql", url.substr(scheme_end));
}

absl::StatusOr<std::unique_ptr<ResultsStore>> open_results_store(const std::string& state_dir,
                                                                 const std::string& postgres_url) {
  std::string url = postgres_url;
  if (url.empty()) {
    const char* env = std::getenv("BMSERVER_POSTGRES_URL");
    if (env) url = env;
  }
  if (!url.empty()) {
    absl::StatusOr<std::string> normalized = normalize_postgres_url(url);
    if (!normalized.ok()) return normalized.status();
    return make_postgres_store(*normalized);
  }
  return make_sqlite_store((std::filesystem::path(state_dir) / "benchmarks.db").string());
}

}  // namespace bm::daemon::bench
