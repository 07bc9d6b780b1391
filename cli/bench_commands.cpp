#include "cli/bench_commands.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bmserver/v1/benchmarks.grpc.pb.h"
#include "cli/command_environment.h"
#include "cli/daemon_client.h"
#include "cli/exit_codes.h"
#include "cli/proto_json.h"
#include "cli/table.h"

namespace bm::cli {
namespace {

using bmserver::v1::BenchmarkEvent;
using bmserver::v1::BenchmarkResult;

std::string postgres_url_from_env() {
  const char* url = std::getenv("BMSERVER_POSTGRES_URL");
  return url ? url : "";
}

absl::StatusOr<DaemonClient> connect_or_report(const GlobalOptions& options, int& exit_code) {
  absl::StatusOr<DaemonClient> client = DaemonClient::connect(options.daemon);
  if (!client.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(client.status().message()).c_str());
    exit_code = client.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitNoDaemon;
  }
  return client;
}

std::string fixed(double v, int digits) {
  return absl::StrFormat("%.*f", digits, v);
}

std::string kv_peak(double usage) {
  return usage < 0 ? "-" : absl::StrFormat("%.0f%%", usage * 100);
}

// The summary: one row per run, the numbers a person compares first.
// "2×448x448" for an image workload's rows, "-" for text.
std::string images_cell(const BenchmarkResult& r) {
  if (r.images_per_prompt() == 0) return "-";
  return absl::StrFormat("%d×%dx%d", r.images_per_prompt(), r.image_width(), r.image_height());
}

// "2× NVIDIA H100 80GB HBM3" for a GPU group, "cpu (2 ranks)" for CPU ranks, else the device name.
std::string device_cell(const std::string& name, int32_t count, int32_t ranks) {
  if (count > 1) return absl::StrFormat("%d× %s", count, name);
  if (count == 0 && ranks > 1) return absl::StrFormat("%s (%d ranks)", name, ranks);
  return name;
}

Table summary_table(const std::vector<BenchmarkResult>& results, bool with_model) {
  // The IMAGES column (images × size per request, and the tokens they are of PROMPT) only when a row has images,
  // so that text sweeps read as before.
  bool with_images =
      std::any_of(results.begin(), results.end(), [](const BenchmarkResult& r) { return r.images_per_prompt() > 0; });
  Table t;
  if (with_model) t.add_column("MODEL");
  t.add_column("GPU");
  if (with_images) {
    t.add_column("IMAGES");
    t.add_column("IMG TOK", Table::Align::kRight);
  }
  for (const char* h : {"PROMPT", "COMPL", "CONC", "ERR", "REQ/MIN", "OUT TOK/S", "TOTAL TOK/S", "TTFT P50", "TTFT P99",
                        "TPOT P50", "ITL P50", "E2E P50", "E2E P99", "KV PEAK"})
    t.add_column(h, Table::Align::kRight);
  for (const BenchmarkResult& r : results) {
    std::vector<std::string> row;
    if (with_model) row.push_back(r.model_name());
    row.push_back(device_cell(r.nvidia_device_name(), r.nvidia_device_count(), r.tensor_parallel_size()));
    if (with_images) {
      row.push_back(images_cell(r));
      row.push_back(r.images_per_prompt() > 0 ? std::to_string(r.num_image_tokens()) : "-");
    }
    for (std::string cell :
         {std::to_string(r.num_prompt_tokens()), std::to_string(r.num_completion_tokens()),
          std::to_string(r.num_requests()) + (r.num_requests() == r.max_requests() ? "*" : ""),
          std::to_string(r.num_errors()), fixed(r.request_throughput_min(), 1),
          fixed(r.completion_token_throughput(), 1), fixed(r.total_token_throughput(), 1),
          fixed(r.ttft_ms().p50(), 1) + " ms", fixed(r.ttft_ms().p99(), 1) + " ms", fixed(r.tpot_ms().p50(), 2) + " ms",
          fixed(r.itl_ms().p50(), 2) + " ms", fixed(r.e2el_ms().p50() / 1000, 2) + " s",
          fixed(r.e2el_ms().p99() / 1000, 2) + " s", kv_peak(r.peak_kv_usage())})
      row.push_back(std::move(cell));
    t.add_row(std::move(row));
  }
  return t;
}

// Columns of the CSV: the result's fields, distributions flattened (ttft_ms_p50 …), as in the results table.
void csv_fields(const google::protobuf::Message& m, const std::string& prefix, bool header,
                std::vector<std::string>& out) {
  const auto* d = m.GetDescriptor();
  const auto* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    std::string name = prefix + f->name();
    using FD = google::protobuf::FieldDescriptor;
    if (f->cpp_type() == FD::CPPTYPE_MESSAGE) {
      csv_fields(r->GetMessage(m, f), name + "_", header, out);
      continue;
    }
    if (header) {
      out.push_back(name);
      continue;
    }
    switch (f->cpp_type()) {
      case FD::CPPTYPE_INT32:
        out.push_back(std::to_string(r->GetInt32(m, f)));
        break;
      case FD::CPPTYPE_INT64:
        out.push_back(std::to_string(r->GetInt64(m, f)));
        break;
      case FD::CPPTYPE_DOUBLE:
        out.push_back(absl::StrFormat("%.17g", r->GetDouble(m, f)));
        break;
      default:
        out.push_back(r->GetString(m, f));
        break;
    }
  }
}

std::string csv_cell(const std::string& v) {
  if (v.find_first_of(",\"\n\r") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string to_csv(const std::vector<BenchmarkResult>& results) {
  std::string out;
  auto line = [&out](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i) out += ',';
      out += csv_cell(cells[i]);
    }
    out += "\n";
  };
  std::vector<std::string> header;
  csv_fields(BenchmarkResult::default_instance(), "", true, header);
  line(header);
  for (const BenchmarkResult& r : results) {
    std::vector<std::string> cells;
    csv_fields(r, "", false, cells);
    line(cells);
  }
  return out;
}

bool write_file(const std::string& path, const std::string& text, const char* what) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) {
    std::fprintf(stderr, "bmserver: cannot write the %s to %s\n", what, path.c_str());
    return false;
  }
  return true;
}

std::string absolute(const std::string& path) {
  std::error_code ec;
  return path.empty() ? path : std::filesystem::absolute(path, ec).lexically_normal().string();
}

// Live progress: on a terminal one bar per run, redrawn in place; otherwise plain lines.
class Progress {
 public:
  explicit Progress(bool tty) : tty_(tty) {}
  void on_event(const BenchmarkEvent& e) {
    if (e.kind() == "message" || e.kind() == "skipped") {
      clear();
      std::printf("%s\n", e.message().c_str());
    } else if (e.kind() == "run_started") {
      clear();
      if (!tty_) std::printf("%s\n", e.message().c_str());
      bar(e, 0);
    } else if (e.kind() == "progress") {
      bar(e, e.num_done());
    } else if (e.kind() == "result") {
      const BenchmarkResult& r = e.result();
      clear();
      std::printf("%d → %d tokens, %d concurrent: %.1f out tok/s, TTFT p50 %.1f ms, TPOT p50 %.2f ms%s\n",
                  r.num_prompt_tokens(), r.num_completion_tokens(), r.num_requests(), r.completion_token_throughput(),
                  r.ttft_ms().p50(), r.tpot_ms().p50(),
                  r.num_errors() ? absl::StrFormat(", %d errors (%s)", r.num_errors(), r.first_error()).c_str() : "");
    }
    std::fflush(stdout);
  }
  void clear() {
    if (tty_ && drawn_) std::printf("\r\033[K");
    drawn_ = false;
  }

 private:
  void bar(const BenchmarkEvent& e, int done) {
    if (!tty_) return;
    constexpr int kWidth = 30;
    int total = std::max(1, e.num_requests());
    int filled = done * kWidth / total;
    std::string cells;
    for (int i = 0; i < kWidth; ++i) cells += i < filled ? "█" : "░";
    std::printf("\r\033[K%d → %d tokens, %d concurrent %s %d/%d", e.num_prompt_tokens(), e.num_completion_tokens(),
                e.num_requests(), cells.c_str(), done, total);
    drawn_ = true;
  }
  bool tty_;
  bool drawn_ = false;
};

int list_results(const GlobalOptions& options, const BenchmarkQueryArgs& args, bool with_plot,
                 bmserver::v1::ListBenchmarksResponse& response) {
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  auto stub = bmserver::v1::Benchmarks::NewStub(client->channel());
  bmserver::v1::ListBenchmarksRequest request;
  request.set_model_name(args.model);
  request.set_postgres_url(postgres_url_from_env());
  request.set_with_plot(with_plot);
  grpc::Status status = stub->List(client->context().get(), request, &response);
  if (!status.ok()) return report_rpc_error(status, client->address());
  return kExitOk;
}

int write_outputs(const std::vector<BenchmarkResult>& results, const std::string& csv_file,
                  const std::string& plot_file, const std::string& svg) {
  if (!csv_file.empty()) {
    if (!write_file(csv_file, to_csv(results), "CSV")) return kExitFailed;
    std::fprintf(stderr, "wrote %s\n", csv_file.c_str());
  }
  if (!plot_file.empty()) {
    if (!write_file(plot_file, svg, "plot")) return kExitFailed;
    std::fprintf(stderr, "wrote %s\n", plot_file.c_str());
  }
  return kExitOk;
}

}  // namespace

absl::StatusOr<ImageSize> parse_image_size(const std::string& text) {
  ImageSize size;
  size_t x = text.find_first_of("xX");
  auto number = [](const std::string& s, int32_t& v) {
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size() && v > 0;
  };
  if (x == std::string::npos || !number(text.substr(0, x), size.width) || !number(text.substr(x + 1), size.height))
    return absl::InvalidArgumentError(
        absl::StrCat("--image-size takes WIDTHxHEIGHT in pixels (e.g. 448x448), not '", text, "'"));
  return size;
}

int run_benchmark(const GlobalOptions& options, const BenchmarkArgs& args) {
  // As the original: --upload without a database to upload to fails before anything starts.
  if (args.upload && postgres_url_from_env().empty()) {
    std::fprintf(stderr, "bmserver: Environment variable BMSERVER_POSTGRES_URL is not set.\n");
    return kExitUsage;
  }
  if (args.upload && args.no_store) {
    std::fprintf(stderr, "bmserver: --upload stores the results and --no-store stores nothing; give one of them\n");
    return kExitUsage;
  }
  // The image workload's flags are checked here for their form; the daemon checks the values (one place for any
  // client of the API).
  ImageSize image_size;
  if (!args.image_size.empty() && args.images_per_prompt == 0) {
    std::fprintf(stderr, "bmserver: --image-size sets the image workload's size: give --images-per-prompt N too\n");
    return kExitUsage;
  }
  if (args.images_per_prompt > 0) {
    absl::StatusOr<ImageSize> parsed = parse_image_size(args.image_size.empty() ? kDefaultImageSize : args.image_size);
    if (!parsed.ok()) {
      std::fprintf(stderr, "bmserver: %s\n", std::string(parsed.status().message()).c_str());
      return kExitUsage;
    }
    image_size = *parsed;
  }
  bmserver::v1::RunBenchmarkRequest request;
  if (absl::Status s = fill_serve_options(args.serve, *request.mutable_serve()); !s.ok()) {
    std::fprintf(stderr, "bmserver: %s\n", std::string(s.message()).c_str());
    return kExitUsage;
  }
  int exit_code = kExitOk;
  absl::StatusOr<DaemonClient> client = connect_or_report(options, exit_code);
  if (!client.ok()) return exit_code;
  request.mutable_store()->set_hub(args.serve.hub);
  request.mutable_store()->set_local_dir(absolute(args.serve.local_dir));
  add_command_environment(*request.mutable_store());
  // A model folder given relative to the caller's directory means nothing to the daemon: send it absolute.
  std::string name = args.name;
  std::error_code ec;
  if (name.find('/') != std::string::npos && std::filesystem::is_directory(name, ec)) name = absolute(name);
  request.set_name(name);
  // The API key goes to the served model, or with --endpoint to that server.
  if (!args.endpoint.empty()) request.mutable_serve()->clear_api_key();
  for (int32_t p : args.prompt_tokens) request.add_prompt_tokens(p);
  for (int32_t c : args.completion_tokens) request.add_completion_tokens(c);
  request.set_seed(request.serve().seed());
  request.set_images_per_prompt(args.images_per_prompt);
  request.set_image_width(image_size.width);
  request.set_image_height(image_size.height);
  request.set_endpoint(args.endpoint);
  request.set_api_key(args.endpoint.empty() ? "" : args.serve.api_key);
  request.set_model(args.model);
  request.set_max_concurrency(args.max_concurrency);
  request.set_postgres_url(postgres_url_from_env());
  request.set_no_store(args.no_store);
  request.set_with_plot(!args.plot_file.empty());

  auto stub = bmserver::v1::Benchmarks::NewStub(client->channel());
  auto context = client->open_context();
  auto reader = stub->Run(context.get(), request);
  bool json = options.output == OutputFormat::kJson;
  Progress progress(!json && isatty(STDOUT_FILENO));
  std::vector<BenchmarkResult> results;
  BenchmarkEvent event, done;
  while (reader->Read(&event)) {
    if (event.kind() == "result") results.push_back(event.result());
    if (event.kind() == "done") done = event;
    if (!json) progress.on_event(event);
  }
  grpc::Status status = reader->Finish();
  progress.clear();
  if (!status.ok()) return report_rpc_error(status, client->address());
  // Probing revises max_requests after a pair's first runs: the "done" event carries the runs as stored.
  if (done.results_size() > 0) results.assign(done.results().begin(), done.results().end());
  if (json) {
    bmserver::v1::ListBenchmarksResponse out;
    for (const auto& r : results) *out.add_results() = r;
    out.set_store(done.store());
    std::printf("%s\n", to_json(out).c_str());
  } else {
    std::printf("\n%s", summary_table(results, /*with_model=*/false).render().c_str());
    std::printf("* = the maximum concurrency for the pair; times are medians and p99 over requests\n");
    if (!done.store().empty()) std::printf("Stored %zu runs in %s\n", results.size(), done.store().c_str());
  }
  return write_outputs(results, args.csv_file, args.plot_file, done.plot_svg());
}

int run_benchmark_list(const GlobalOptions& options, const BenchmarkQueryArgs& args) {
  bmserver::v1::ListBenchmarksResponse response;
  if (int rc = list_results(options, args, false, response); rc != kExitOk) return rc;
  if (options.output == OutputFormat::kJson) {
    std::printf("%s\n", to_json(response).c_str());
    return kExitOk;
  }
  // One line per sweep: (model, GPU, count, version, P, C, images) with its best output throughput.
  using Key =
      std::tuple<std::string, std::string, int32_t, int32_t, std::string, int32_t, int32_t, int32_t, int32_t, int32_t>;
  std::map<Key, std::vector<const BenchmarkResult*>> sweeps;
  for (const auto& r : response.results())
    sweeps[{r.model_name(), r.nvidia_device_name(), r.nvidia_device_count(), r.tensor_parallel_size(),
            r.bmserver_version(), r.num_prompt_tokens(), r.num_completion_tokens(), r.images_per_prompt(),
            r.image_width(), r.image_height()}]
        .push_back(&r);
  Table t;
  for (const char* h :
       {"MODEL", "GPU", "VERSION", "PROMPT", "COMPL", "IMAGES", "RUNS", "MAX CONC", "BEST OUT TOK/S", "MEASURED"})
    t.add_column(h, std::string(h) == "MODEL" || std::string(h) == "GPU" || std::string(h) == "VERSION" ||
                            std::string(h) == "MEASURED" || std::string(h) == "IMAGES"
                        ? Table::Align::kLeft
                        : Table::Align::kRight);
  for (const auto& [key, runs] : sweeps) {
    double best = 0;
    std::string newest;
    for (const auto* r : runs) {
      best = std::max(best, r->completion_token_throughput());
      newest = std::max(newest, r->created_at());
    }
    const auto& [model, gpu, count, ranks, version, p, c, images, width, height] = key;
    t.add_row({model, device_cell(gpu, count, ranks), version, std::to_string(p), std::to_string(c),
               images_cell(*runs.front()), std::to_string(runs.size()), std::to_string(runs.front()->max_requests()),
               fixed(best, 1), newest});
  }
  if (t.empty()) {
    std::printf("No benchmark results in %s.\n", response.store().c_str());
  } else {
    std::printf("%s", t.render().c_str());
  }
  return kExitOk;
}

int run_benchmark_show(const GlobalOptions& options, const BenchmarkQueryArgs& args) {
  bmserver::v1::ListBenchmarksResponse response;
  if (int rc = list_results(options, args, !args.plot_file.empty(), response); rc != kExitOk) return rc;
  std::vector<BenchmarkResult> results(response.results().begin(), response.results().end());
  if (options.output == OutputFormat::kJson) {
    std::printf("%s\n", to_json(response).c_str());
  } else if (results.empty()) {
    std::fprintf(stderr, "bmserver: no benchmark results for '%s' in %s\n", args.model.c_str(),
                 response.store().c_str());
    return kExitFailed;
  } else {
    std::printf("%s", summary_table(results, /*with_model=*/false).render().c_str());
  }
  return write_outputs(results, args.csv_file, args.plot_file, response.plot_svg());
}

int run_benchmark_export(const GlobalOptions& options, const BenchmarkQueryArgs& args) {
  bmserver::v1::ListBenchmarksResponse response;
  if (int rc = list_results(options, args, !args.plot_file.empty(), response); rc != kExitOk) return rc;
  std::vector<BenchmarkResult> results(response.results().begin(), response.results().end());
  if (options.output == OutputFormat::kJson) {
    std::printf("%s\n", to_json(response).c_str());
  } else if (args.csv_file.empty()) {
    std::printf("%s", to_csv(results).c_str());
  }
  return write_outputs(results, args.csv_file, args.plot_file, response.plot_svg());
}

}  // namespace bm::cli
