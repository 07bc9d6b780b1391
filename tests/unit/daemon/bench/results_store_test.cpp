// The results stores against a real SQLite file and a real PostgreSQL server started by the test (Debian's
// postgresql 15; skipped with a message when it is not installed or the test is not root, as initdb must run
// as the postgres user).
#include "daemon/bench/results_store.h"

#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <pqxx/pqxx>

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/bench/results_schema.h"

namespace bm::daemon::bench {
namespace {

namespace fs = std::filesystem;
using bmserver::v1::BenchmarkResult;
using ::testing::HasSubstr;

constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin";

BenchmarkResult sample(const std::string& model, int32_t concurrency, double throughput) {
  BenchmarkResult r;
  r.set_nvidia_device_name("NVIDIA H100 80GB HBM3");
  r.set_nvidia_device_count(1);
  r.set_tensor_parallel_size(1);
  r.set_bmserver_version("0.1.0");
  r.set_model_name(model);
  r.set_num_prompt_tokens(500);
  r.set_num_completion_tokens(500);
  r.set_num_requests(concurrency);
  r.set_model_size(7.61);
  r.set_model_quant("awq");
  r.set_serve_options(R"({"backend":"cuda","note":"it's 'quoted'"})");
  r.set_max_cache_tokens(1'000'000);
  r.set_max_requests(256);
  r.set_completion_token_throughput(throughput);
  r.set_request_throughput_min(throughput / 500 * 60);
  // Every run fills all four distributions; an unset sub-message would not survive a round trip as unset.
  r.mutable_tpot_ms()->set_mean(0);
  r.mutable_e2el_ms()->set_mean(0);
  r.mutable_ttft_ms()->set_p99(123.456789012345);
  r.mutable_itl_ms()->set_p50(0.1 + 0.2);  // not exactly representable: must survive the round trip
  r.set_peak_kv_usage(-1);
  r.set_created_at("2026-11-25T03:00:00Z");
  return r;
}

bool same(const BenchmarkResult& a, const BenchmarkResult& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// One PostgreSQL server for the whole suite.
class PostgresServer {
 public:
  static PostgresServer* get() {
    static PostgresServer* server = [] {
      auto* s = new PostgresServer();
      if (!s->start()) {
        delete s;
        return static_cast<PostgresServer*>(nullptr);
      }
      return s;
    }();
    return server;
  }
  static std::string skip_reason() {
    if (!fs::exists(fs::path(kPgBin) / "initdb")) return "PostgreSQL 15 is not installed (apt install postgresql)";
    if (geteuid() != 0) return "starting PostgreSQL needs root (initdb runs as the postgres user via runuser)";
    return "PostgreSQL did not start; see the log under /tmp/bm-pg-*";
  }
  std::string url() const { return absl::StrCat("postgresql://postgres@127.0.0.1:", port_, "/postgres"); }
  bool run_ctl(const std::string& action) {
    std::string cmd =
        absl::StrCat("runuser -u postgres -- ", kPgBin, "/pg_ctl -D ", dir_, "/data -w -l ", dir_, "/log -o \"-p ",
                     port_, " -k ", dir_, " -c listen_addresses=127.0.0.1 -c fsync=off\" ", action,
                     action == "stop" ? " -m immediate" : "", " > /dev/null 2>&1");
    return std::system(cmd.c_str()) == 0;
  }

 private:
  bool start() {
    if (!fs::exists(fs::path(kPgBin) / "initdb") || geteuid() != 0) return false;
    char tmpl[] = "/tmp/bm-pg-XXXXXX";
    if (!mkdtemp(tmpl)) return false;
    dir_ = tmpl;
    port_ = free_port();
    if (std::system(absl::StrCat("chown postgres ", dir_).c_str()) != 0) return false;
    std::string init = absl::StrCat("runuser -u postgres -- ", kPgBin, "/initdb -D ", dir_,
                                    "/data -U postgres -A trust --no-sync > ", dir_, "/initdb.log 2>&1");
    if (std::system(init.c_str()) != 0) return false;
    if (!run_ctl("start")) return false;
    std::atexit([] {
      if (PostgresServer* s = get()) {
        s->run_ctl("stop");
        std::error_code ec;
        fs::remove_all(s->dir_, ec);
      }
    });
    return true;
  }
  std::string dir_;
  int port_ = 0;
};

// A store of each kind, empty at the start of each test.
class ResultsStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      dir_ =
          fs::temp_directory_path() /
          absl::StrCat("bm-sqlite-", getpid(), "-", ::testing::UnitTest::GetInstance()->random_seed(), "-", counter_++);
      fs::create_directories(dir_);
      path_ = (dir_ / "benchmarks.db").string();
      store_ = make_sqlite_store(path_);
      return;
    }
    PostgresServer* pg = PostgresServer::get();
    if (!pg) GTEST_SKIP() << PostgresServer::skip_reason();
    pqxx::connection c(pg->url());
    pqxx::work w(c);
    w.exec("DROP TABLE IF EXISTS chat_benchmark_result");
    w.exec("DROP TABLE IF EXISTS schema_version");
    w.commit();
    store_ = make_postgres_store(pg->url());
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  // Makes the store refuse rows of the model "bad", to prove a failed batch leaves nothing behind.
  void reject_model_bad() {
    if (GetParam() == "sqlite") {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
      ASSERT_EQ(sqlite3_exec(db,
                             "CREATE TRIGGER reject_bad BEFORE INSERT ON chat_benchmark_result WHEN NEW.model_name = "
                             "'bad' BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END",
                             nullptr, nullptr, nullptr),
                SQLITE_OK);
      sqlite3_close(db);
    } else {
      pqxx::connection c(PostgresServer::get()->url());
      pqxx::work w(c);
      w.exec("ALTER TABLE chat_benchmark_result ADD CONSTRAINT reject_bad CHECK (model_name <> 'bad')");
      w.commit();
    }
  }

  // Runs SQL on the store's database directly (to build an old schema the way an older daemon left it).
  void exec_sql(const std::string& sql) {
    if (GetParam() == "sqlite") {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
      char* message = nullptr;
      int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
      std::string text = message ? message : "";
      sqlite3_free(message);
      sqlite3_close(db);
      ASSERT_EQ(rc, SQLITE_OK) << text;
    } else {
      pqxx::connection c(PostgresServer::get()->url());
      pqxx::work w(c);
      w.exec(sql);
      w.commit();
    }
  }

  // Inserts `row` as an older daemon would have: only the columns its schema had (`had(index, name)` over
  // result_columns()), each value quoted as SQL text.
  void insert_as_older_schema(const BenchmarkResult& row, const std::function<bool(size_t, const std::string&)>& had) {
    std::vector<std::string> names, values, all = to_column_values(row);
    for (size_t i = 0; i < result_columns().size(); ++i) {
      if (!had(i, result_columns()[i].name)) continue;
      names.push_back(result_columns()[i].name);
      std::string quoted = "'";
      for (char ch : all[i]) quoted += ch == '\'' ? std::string("''") : std::string(1, ch);
      values.push_back(quoted + "'");
    }
    exec_sql(absl::StrCat("INSERT INTO chat_benchmark_result (", absl::StrJoin(names, ", "), ") VALUES (",
                          absl::StrJoin(values, ", "), ")"));
  }

  static inline int counter_ = 0;
  fs::path dir_;
  std::string path_;
  std::unique_ptr<ResultsStore> store_;
};

TEST_P(ResultsStoreTest, CheckMigratesToTheNewestSchema) {
  ASSERT_TRUE(store_->check().ok());
  EXPECT_EQ(store_->schema_version(), static_cast<int>(schema_migrations(SqlDialect::kSqlite).size()));
  ASSERT_TRUE(store_->check().ok());  // a second time is a no-op
  auto rows = store_->list("");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_TRUE(rows->empty());
}

TEST_P(ResultsStoreTest, UpsertsByTheOriginalKeyAndReadsBackExactly) {
  ASSERT_TRUE(store_->check().ok());
  BenchmarkResult a = sample("qwen2.5-7b-awq", 1, 100.5), b = sample("qwen2.5-7b-awq", 2, 180.25),
                  c = sample("qwq-32b-awq", 1, 40);
  ASSERT_TRUE(store_->upsert({a, b, c}).ok());
  auto rows = store_->list("qwen2.5-7b-awq");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_TRUE(same((*rows)[0], a)) << (*rows)[0].DebugString();
  EXPECT_TRUE(same((*rows)[1], b));

  // The same key again overwrites every other column; a new GPU count is a new row.
  BenchmarkResult b2 = sample("qwen2.5-7b-awq", 2, 999);
  b2.set_first_error("one request failed");
  BenchmarkResult b_two_gpus = sample("qwen2.5-7b-awq", 2, 300);
  b_two_gpus.set_nvidia_device_count(2);
  ASSERT_TRUE(store_->upsert({b2, b_two_gpus}).ok());
  rows = store_->list("");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 4u);
  int found = 0;
  for (const auto& r : *rows) {
    if (r.num_requests() == 2 && r.nvidia_device_count() == 1) {
      EXPECT_TRUE(same(r, b2));
      ++found;
    }
  }
  EXPECT_EQ(found, 1);
}

TEST_P(ResultsStoreTest, AFailedBatchStoresNoRowAtAll) {
  ASSERT_TRUE(store_->check().ok());
  reject_model_bad();
  absl::Status s = store_->upsert({sample("good", 1, 1), sample("bad", 1, 1)});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("nothing was stored"));
  auto rows = store_->list("");
  ASSERT_TRUE(rows.ok());
  EXPECT_TRUE(rows->empty());
}

// A text run and an image run of the same (GPU, version, model, P, C, concurrency) are different rows, and two
// image sizes too.
TEST_P(ResultsStoreTest, ImageWorkloadsAreTheirOwnRows) {
  ASSERT_TRUE(store_->check().ok());
  BenchmarkResult text = sample("qwen2.5-vl-3b", 1, 10), image = sample("qwen2.5-vl-3b", 1, 7),
                  bigger = sample("qwen2.5-vl-3b", 1, 5);
  image.set_images_per_prompt(1);
  image.set_image_width(448);
  image.set_image_height(448);
  image.set_num_image_tokens(258);
  bigger = image;
  bigger.set_image_width(896);
  bigger.set_num_image_tokens(514);
  ASSERT_TRUE(store_->upsert({text, image, bigger}).ok());
  auto rows = store_->list("qwen2.5-vl-3b");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_TRUE(same((*rows)[0], text));  // ordered by images, then size
  EXPECT_TRUE(same((*rows)[1], image));
  EXPECT_TRUE(same((*rows)[2], bigger));
}

// A database an older daemon left at version 1 (the original's seven-column key) keeps its rows as text runs and
// then takes image runs beside them.
TEST_P(ResultsStoreTest, VersionOneDatabasesMigrateKeepingTheirRows) {
  SqlDialect dialect = GetParam() == "sqlite" ? SqlDialect::kSqlite : SqlDialect::kPostgres;
  exec_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)");
  exec_sql(schema_migrations(dialect).front());
  exec_sql("INSERT INTO schema_version (version) VALUES (1)");
  BenchmarkResult old = sample("qwen2.5-vl-3b", 4, 12.5);
  size_t first_v2_column = 0;  // version 2's columns come after version 1's
  while (result_columns()[first_v2_column].name != "images_per_prompt") ++first_v2_column;
  insert_as_older_schema(old, [&](size_t i, const std::string&) { return i < first_v2_column; });

  ASSERT_TRUE(store_->check().ok());
  EXPECT_EQ(store_->schema_version(), static_cast<int>(schema_migrations(dialect).size()));
  BenchmarkResult image = sample("qwen2.5-vl-3b", 4, 3);
  image.set_images_per_prompt(2);
  image.set_image_width(224);
  image.set_image_height(224);
  image.set_num_image_tokens(132);
  ASSERT_TRUE(store_->upsert({image}).ok());
  auto rows = store_->list("");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_TRUE(same((*rows)[0], old)) << (*rows)[0].DebugString();
  EXPECT_TRUE(same((*rows)[1], image));
}

// A database at version 2 keeps its rows as one-rank runs; a two-rank run of the same key is a row of its own.
TEST_P(ResultsStoreTest, VersionTwoDatabasesMigrateToOneRankRowsBesideTensorParallelRuns) {
  SqlDialect dialect = GetParam() == "sqlite" ? SqlDialect::kSqlite : SqlDialect::kPostgres;
  exec_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)");
  const std::vector<std::string> migrations = schema_migrations(dialect);
  ASSERT_GE(migrations.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    exec_sql(migrations[i]);
    exec_sql(absl::StrCat("INSERT INTO schema_version (version) VALUES (", i + 1, ")"));
  }
  BenchmarkResult old = sample("qwen2.5-7b", 8, 20);
  insert_as_older_schema(old, [](size_t, const std::string& name) { return name != "tensor_parallel_size"; });

  ASSERT_TRUE(store_->check().ok());
  EXPECT_EQ(store_->schema_version(), static_cast<int>(migrations.size()));  // the row got version 3's default, 1
  BenchmarkResult two_ranks = sample("qwen2.5-7b", 8, 35);
  two_ranks.set_tensor_parallel_size(2);
  ASSERT_TRUE(store_->upsert({two_ranks}).ok());
  auto rows = store_->list("qwen2.5-7b");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_TRUE(same((*rows)[0], old)) << (*rows)[0].DebugString();
  EXPECT_TRUE(same((*rows)[1], two_ranks)) << (*rows)[1].DebugString();
}

INSTANTIATE_TEST_SUITE_P(Stores, ResultsStoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

TEST(SqliteStoreTest, AFileThatVanishedBeforeWritingIsAClearErrorAndNotRecreated) {
  fs::path dir = fs::temp_directory_path() / absl::StrCat("bm-sqlite-gone-", getpid());
  fs::create_directories(dir);
  std::string path = (dir / "benchmarks.db").string();
  auto store = make_sqlite_store(path);
  ASSERT_TRUE(store->check().ok());
  fs::remove_all(dir);
  absl::Status s = store->upsert({sample("m", 1, 1)});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_FALSE(fs::exists(path));
}

TEST(PostgresStoreTest, AServerThatGoesAwayMidRunFailsTheWriteAndStoresNothing) {
  PostgresServer* pg = PostgresServer::get();
  if (!pg) GTEST_SKIP() << PostgresServer::skip_reason();
  {
    pqxx::connection c(pg->url());
    pqxx::work w(c);
    w.exec("DROP TABLE IF EXISTS chat_benchmark_result");
    w.exec("DROP TABLE IF EXISTS schema_version");
    w.commit();
  }
  auto store = make_postgres_store(pg->url());
  ASSERT_TRUE(store->check().ok());  // checked before the sweep starts …
  ASSERT_TRUE(pg->run_ctl("stop"));  // … and gone by the time it ends
  absl::Status s = store->upsert({sample("m", 1, 1), sample("m", 2, 1)});
  ASSERT_TRUE(pg->run_ctl("start"));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("cannot write the results to the results database PostgreSQL 127.0.0.1:"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("nothing was stored"));
  auto rows = store->list("");
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_TRUE(rows->empty());
}

TEST(PostgresStoreTest, AnUnreachableServerIsOneSentence) {
  auto store = make_postgres_store(absl::StrCat("postgresql://postgres:secret@127.0.0.1:", free_port(), "/results"));
  absl::Status s = store->check();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot use the results database PostgreSQL 127.0.0.1:"));
  EXPECT_THAT(std::string(s.message()), ::testing::Not(HasSubstr("secret")));
  EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
}

TEST(PostgresUrlTest, AcceptsLibpqAndSqlalchemyForms) {
  EXPECT_EQ(*normalize_postgres_url("postgresql://u:p@h:5432/db"), "postgresql://u:p@h:5432/db");
  EXPECT_EQ(*normalize_postgres_url("postgresql+psycopg://u:p@h/db"), "postgresql://u:p@h/db");
  EXPECT_EQ(*normalize_postgres_url("postgres://h/db?sslmode=require"), "postgresql://h/db?sslmode=require");
  EXPECT_THAT(std::string(normalize_postgres_url("mysql://h/db").status().message()), HasSubstr("is not PostgreSQL"));
  EXPECT_THAT(std::string(normalize_postgres_url("h:5432").status().message()), HasSubstr("is not a URL"));
  EXPECT_THAT(std::string(normalize_postgres_url("postgresql+odbc://h/db").status().message()),
              HasSubstr("unknown PostgreSQL driver"));
}

TEST(ResultsStoreFactoryTest, SqliteInTheStateDirUnlessAUrlIsGiven) {
  unsetenv("BMSERVER_POSTGRES_URL");
  auto sqlite = open_results_store("/var/lib/bmserver", "");
  ASSERT_TRUE(sqlite.ok());
  EXPECT_EQ((*sqlite)->describe(), "SQLite /var/lib/bmserver/benchmarks.db");
  auto pg = open_results_store("/x", "postgresql+psycopg://user:pw@db.example:5433/bench");
  ASSERT_TRUE(pg.ok());
  EXPECT_EQ((*pg)->describe(), "PostgreSQL db.example:5433/bench");
  setenv("BMSERVER_POSTGRES_URL", "postgresql://env-host/db", 1);
  auto from_env = open_results_store("/x", "");
  unsetenv("BMSERVER_POSTGRES_URL");
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ((*from_env)->describe(), "PostgreSQL env-host/db");
}

TEST(ResultsSchemaTest, MigrationOneHoldsTheOriginalKey) {
  EXPECT_THAT(schema_migrations(SqlDialect::kSqlite).front(),
              HasSubstr("PRIMARY KEY (nvidia_device_name, nvidia_device_count, bmserver_version, model_name, "
                        "num_prompt_tokens, num_completion_tokens, num_requests)"));
}

// SQLite's newest table is the one the last rebuild creates; every field of the result must be a column of it, in
// order (a new field without a migration fails here).
TEST(ResultsSchemaTest, TheNewestTableHoldsEveryFieldOfTheResultInOrder) {
  std::string last = schema_migrations(SqlDialect::kSqlite).back();
  std::string create = last.substr(last.find("CREATE TABLE"));
  size_t pos = create.find('(') + 1;
  for (const Column& c : result_columns()) {
    size_t at = create.find("\n  " + c.name + " ", pos);
    ASSERT_NE(at, std::string::npos) << c.name << " is a field of BenchmarkResult but not a column: add a migration";
    pos = at + 1;
  }
  EXPECT_THAT(create, HasSubstr("PRIMARY KEY (nvidia_device_name, nvidia_device_count, bmserver_version, model_name, "
                                "num_prompt_tokens, num_completion_tokens, num_requests, images_per_prompt, "
                                "image_width, image_height, tensor_parallel_size)"));
  // PostgreSQL adds the same columns and key: version 2's, then version 3's.
  const std::vector<std::string> pg = schema_migrations(SqlDialect::kPostgres);
  ASSERT_EQ(pg.size(), 3u);
  for (const char* c : {"images_per_prompt", "image_width", "image_height", "num_image_tokens"})
    EXPECT_THAT(pg[1], HasSubstr(absl::StrCat("ADD COLUMN ", c, " BIGINT NOT NULL DEFAULT 0")));
  EXPECT_THAT(pg[1], HasSubstr("ADD PRIMARY KEY (nvidia_device_name, nvidia_device_count, bmserver_version, "
                               "model_name, num_prompt_tokens, num_completion_tokens, num_requests, images_per_prompt, "
                               "image_width, image_height)"));
  EXPECT_THAT(pg[2], HasSubstr("ADD COLUMN tensor_parallel_size BIGINT NOT NULL DEFAULT 1"));
  EXPECT_THAT(pg[2], HasSubstr("ADD PRIMARY KEY (nvidia_device_name, nvidia_device_count, bmserver_version, "
                               "model_name, num_prompt_tokens, num_completion_tokens, num_requests, images_per_prompt, "
                               "image_width, image_height, tensor_parallel_size)"));
}

}  // namespace
}  // namespace bm::daemon::bench
