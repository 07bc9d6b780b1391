// The load generator, verified against a fake OpenAI server (tests/tools/fake_openai_server.py) so that it is
// checked independently of our engine; and its SSE and /metrics parsing on recorded bytes.
#include "daemon/bench/openai_client.h"

#include <filesystem>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon/bench/benchmark_runner.h"
#include "daemon/bench/prompt_builder.h"
#include "tests/unit/daemon/bench/fake_openai_server.h"

namespace bm::daemon::bench {
namespace {

using ::testing::ElementsAre;
using testing::FakeOpenAiServer;
using ::testing::HasSubstr;

TEST(SseReaderTest, TimesEveryChoicesMessageAndReadsUsage) {
  RequestRecord r;
  SseReader reader(r);
  std::string stream =
      "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\r\n\r\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n"
      ": keep-alive comment\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n"
      "data: [DONE]\n\n";
  // Split at awkward places: inside a line and between \r and \n.
  double t = 1.0;
  for (size_t i = 0; i < stream.size(); i += 13)
    reader.feed(stream.data() + i, std::min<size_t>(13, stream.size() - i), t += 1);
  reader.finish(200, 100);
  EXPECT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.chunk_times_s.size(), 2u);
  EXPECT_EQ(r.prompt_tokens, 7);
  EXPECT_EQ(r.completion_tokens, 2);
  EXPECT_LT(r.end_s, 100);  // the [DONE] time, not the close
}

TEST(SseReaderTest, HttpErrorsAndNonStreamsAreErrors) {
  RequestRecord a;
  SseReader ra(a);
  std::string body = R"({"error":{"message":"The model 'x' does not exist.","type":"invalid_request_error"}})";
  ra.feed(body.data(), body.size(), 1);
  ra.finish(404, 2);
  EXPECT_EQ(a.error, "HTTP 404: The model 'x' does not exist.");

  RequestRecord b;
  SseReader rb(b);
  std::string html = "<html>hello</html>";
  rb.feed(html.data(), html.size(), 1);
  rb.finish(200, 2);
  EXPECT_THAT(b.error, HasSubstr("did not answer with an OpenAI event stream"));

  RequestRecord c;
  SseReader rc(c);
  std::string cut = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
  rc.feed(cut.data(), cut.size(), 1);
  rc.finish(200, 2);
  EXPECT_THAT(c.error, HasSubstr("ended before 'data: [DONE]'"));
}

TEST(KvUsageTest, ReadsOursAndVllmsGaugeForTheModel) {
  std::string ours =
      "# HELP bmserver:kv_cache_usage_perc x\n"
      "bmserver:kv_cache_usage_perc{model_name=\"a\"} 0.25\n"
      "bmserver:kv_cache_usage_perc{model_name=\"b\"} 0.75\n"
      "bmserver:kv_cache_usage_perc_total 9\n";
  EXPECT_DOUBLE_EQ(parse_kv_usage(ours, "a"), 0.25);
  EXPECT_DOUBLE_EQ(parse_kv_usage(ours, "b"), 0.75);
  EXPECT_DOUBLE_EQ(parse_kv_usage("vllm:gpu_cache_usage_perc{model_name=\"m\",engine=\"0\"} 0.5\n", "m"), 0.5);
  EXPECT_DOUBLE_EQ(parse_kv_usage("vllm:kv_cache_usage_perc 0.125\n", "m"), 0.125);
  EXPECT_DOUBLE_EQ(parse_kv_usage("process_cpu_seconds_total 3\n", "m"), -1);
}

class FakeServerTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> args = {}) {
    server_ = std::make_unique<FakeOpenAiServer>(std::move(args));
    if (!server_->ok()) GTEST_SKIP() << "python3 could not start tests/tools/fake_openai_server.py";
  }
  std::unique_ptr<FakeOpenAiServer> server_;
};

TEST_F(FakeServerTest, ABurstIsOpenAtOnceAndEveryStreamIsTimed) {
  start();
  OpenAiClient client(server_->url() + "/v1/", "");
  constexpr int kBurst = 24;
  ASSERT_EQ(client.post_json("/expect", R"({"n": 24})")->status, 200);
  std::vector<std::string> bodies(kBurst, chat_request_body("fake-model", "一二三", 5));
  size_t num_finished = 0;
  std::vector<RequestRecord> records = client.stream_chat(bodies, [&](size_t) { ++num_finished; });
  EXPECT_EQ(num_finished, static_cast<size_t>(kBurst));
  for (const RequestRecord& r : records) {
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.chunk_times_s.size(), 5u);
    EXPECT_EQ(r.completion_tokens, 5);
    EXPECT_EQ(r.prompt_tokens, 13);
    EXPECT_EQ(r.start_s, records.front().start_s);
    EXPECT_LE(r.start_s, r.chunk_times_s.front());
    EXPECT_LE(r.chunk_times_s.back(), r.end_s);
  }
  auto stats = nlohmann::json::parse(client.get("/stats")->body);
  EXPECT_EQ(stats["max_active"], kBurst);  // the fake held every stream until all had arrived
}

TEST_F(FakeServerTest, TwoHundredFiftySixConcurrentStreamsWork) {
  start();
  OpenAiClient client(server_->url(), "");
  std::vector<std::string> bodies(256, chat_request_body("fake-model", "字", 2));
  std::vector<RequestRecord> records = client.stream_chat(bodies, [](size_t) {});
  int ok = 0;
  std::string first_error;
  for (const RequestRecord& r : records) {
    ok += r.ok() && r.completion_tokens == 2;
    if (!r.ok() && first_error.empty()) first_error = r.error;
  }
  EXPECT_EQ(ok, 256) << first_error;
}

TEST_F(FakeServerTest, PromptsAreExactThroughTokenize) {
  start();
  OpenAiClient client(server_->url(), "");
  PromptBuilder builder(server_token_counter(client, "fake-model"), 2025);
  absl::StatusOr<std::string> text = builder.build(64);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->size(), (64u - 10u) * 3);  // 10 template tokens, then one per 3-byte character
  EXPECT_THAT(std::string(builder.build(4).status().message()),
              HasSubstr("shorter than the chat template alone (10 tokens)"));
}

TEST_F(FakeServerTest, SweepWithAGivenMaximumRunsEveryLevelWithExactLengths) {
  start();
  BenchmarkTarget target;
  target.base_url = server_->url();
  target.model = "fake-model";
  target.max_concurrency = 3;
  target.base.set_model_name("fake");
  SweepPlan plan{{16, 20}, {4}, 2025};
  std::vector<std::string> kinds;
  auto results = run_sweep(
      target, plan, [&](const bmserver::v1::BenchmarkEvent& e) { kinds.push_back(e.kind()); }, [] { return false; });
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 6u);
  std::vector<int32_t> levels;
  for (const auto& r : *results) {
    levels.push_back(r.num_requests());
    EXPECT_EQ(r.num_errors(), 0) << r.first_error();
    EXPECT_EQ(r.num_completed(), r.num_requests());
    EXPECT_EQ(r.max_requests(), 3);
    EXPECT_EQ(r.num_completion_tokens(), 4);
    EXPECT_GT(r.completion_token_throughput(), 0);
    EXPECT_DOUBLE_EQ(r.total_token_throughput() / r.completion_token_throughput(),
                     (r.num_prompt_tokens() + 4.0) / 4.0);  // exact P and C in every request
    EXPECT_GE(r.peak_kv_usage(), 0);                        // the fake's gauge was read, not the other model's 0.99
    EXPECT_LT(r.peak_kv_usage(), 0.99);
  }
  EXPECT_THAT(levels, ElementsAre(1, 2, 3, 1, 2, 3));
  EXPECT_EQ((*results)[3].num_prompt_tokens(), 20);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "result"), 6);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "progress"), 2 * (1 + 2 + 3));
}

TEST_F(FakeServerTest, ProbingStopsAtTheFirstLevelWithErrors) {
  start({"--fail-above", "5", "--token-delay-ms", "50"});  // long enough that a burst of 8 overlaps on a busy machine
  BenchmarkTarget target;
  target.base_url = server_->url();
  target.model = "fake-model";
  SweepPlan plan{{12}, {3}, 1};
  auto results = run_sweep(
      target, plan, [](const auto&) {}, [] { return false; });
  ASSERT_TRUE(results.ok()) << results.status();
  std::vector<int32_t> levels;
  for (const auto& r : *results) levels.push_back(r.num_requests());
  EXPECT_THAT(levels, ElementsAre(1, 2, 4, 8));
  EXPECT_GT(results->back().num_errors(), 0);  // how many of the 8 overlap depends on scheduling
  EXPECT_THAT(results->back().first_error(), HasSubstr("HTTP 503: server overloaded"));
  for (const auto& r : *results) EXPECT_EQ(r.max_requests(), 4);
}

TEST_F(FakeServerTest, AServerThatIgnoresIgnoreEosIsCaught) {
  start({"--mode", "eos"});
  BenchmarkTarget target;
  target.base_url = server_->url();
  target.model = "fake-model";
  target.max_concurrency = 1;
  auto results = run_sweep(
      target, {{12}, {8}, 1}, [](const auto&) {}, [] { return false; });
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results->front().num_errors(), 1);
  EXPECT_THAT(results->front().first_error(), HasSubstr("returned 3 completion tokens instead of 8"));
}

TEST_F(FakeServerTest, AnEndpointThatIsNotOpenAiIsOneSentenceAndStoresNothing) {
  start({"--mode", "html"});
  std::filesystem::path state = std::filesystem::temp_directory_path() / ("bm-bench-state-" + std::to_string(getpid()));
  BenchmarkRunner runner(
      nullptr, [] { return std::string(); }, state.string());
  bmserver::v1::RunBenchmarkRequest request;
  request.set_endpoint(server_->url());
  request.add_prompt_tokens(16);
  request.add_completion_tokens(4);
  absl::Status s = runner.run(
      request, [](const auto&) {}, [] { return false; });
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(" is not an OpenAI-compatible server: GET /v1/models answered HTTP 200 without a model list"));
  auto listed = runner.list({});
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->results_size(), 0);
  std::filesystem::remove_all(state);
}

TEST_F(FakeServerTest, AnEndpointRunIsStoredAndReadBack) {
  start();
  std::filesystem::path state =
      std::filesystem::temp_directory_path() / ("bm-bench-state2-" + std::to_string(getpid()));
  BenchmarkRunner runner(
      nullptr, [] { return std::string(); }, state.string());
  bmserver::v1::RunBenchmarkRequest request;
  request.set_endpoint(server_->url());
  request.set_max_concurrency(2);
  request.set_with_plot(true);
  request.add_prompt_tokens(16);
  request.add_completion_tokens(4);
  std::string store, svg;
  absl::Status s = runner.run(
      request,
      [&](const bmserver::v1::BenchmarkEvent& e) {
        if (e.kind() == "done") {
          store = e.store();
          svg = e.plot_svg();
        }
      },
      [] { return false; });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(store, HasSubstr("benchmarks.db"));
  EXPECT_THAT(svg, HasSubstr("<svg"));
  auto listed = runner.list({});
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->results_size(), 2);
  EXPECT_EQ(listed->results(0).model_name(), "fake-model");
  EXPECT_EQ(listed->results(1).num_requests(), 2);
  // Empty and negative lists fail before anything runs.
  request.clear_prompt_tokens();
  EXPECT_THAT(std::string(runner
                              .run(
                                  request, [](const auto&) {}, [] { return false; })
                              .message()),
              HasSubstr("list of prompt tokens is empty"));
  request.add_prompt_tokens(-1);
  EXPECT_THAT(std::string(runner
                              .run(
                                  request, [](const auto&) {}, [] { return false; })
                              .message()),
              HasSubstr("at least 1, not -1"));
  request.set_prompt_tokens(0, 4000);
  request.set_completion_tokens(0, 200);
  EXPECT_THAT(std::string(runner
                              .run(
                                  request, [](const auto&) {}, [] { return false; })
                              .message()),
              HasSubstr("over the model's context of 4096 tokens"));
  EXPECT_EQ(runner.list({})->results_size(), 2);
  std::filesystem::remove_all(state);
}

}  // namespace
}  // namespace bm::daemon::bench
