// bmserver: the thin CLI. It talks to bmserverd over gRPC only. CLI11 stays in this file (it costs seconds
// per translation unit): commands are defined here, their logic lives in cli/*_command(s).cpp.
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/bench_commands.h"
#include "cli/chat_download_commands.h"
#include "cli/chat_store_commands.h"
#include "cli/env_command.h"
#include "cli/exit_codes.h"
#include "cli/global_options.h"
#include "cli/hub_argument.h"
#include "cli/serve_commands.h"
#include "common/kv_cache_dtype.h"
#include "common/version.h"

int main(int argc, char** argv) {
  using bm::cli::GlobalOptions;
  using bm::cli::OutputFormat;

  CLI::App app{"bmserver: keep, serve and benchmark large chat models (talks to the bmserverd daemon)"};
  app.fallthrough();  // global options may follow the subcommand: `bmserver env -o json`
  app.require_subcommand(0, 1);
  GlobalOptions global;
  std::string output = "table";
  bool show_version = false;
  app.add_option("--daemon", global.daemon, "daemon address: unix:/path or tcp:host:port  [env BMSERVER_DAEMON]");
  app.add_option("-o,--output", output, "output format")->check(CLI::IsMember({"table", "json"}));
  app.add_flag("--version", show_version, "print the CLI's and the daemon's versions");

  std::function<int()> action;

  CLI::App* env = app.add_subcommand("env", "show GPUs, driver, CUDA/NCCL/cuBLAS versions, CPU and versions");
  env->callback([&] { action = [&] { return bm::cli::run_env(global); }; });

  CLI::App* chat = app.add_subcommand("chat", "chat models: search, list, download, update, remove, serve, benchmark");
  chat->require_subcommand(1);
  // ---- chat subcommands: each block defines its flags and sets `action` ----
  // Positional words: the original's leading hub (`chat list hf PATTERN`) and then the pattern or name; split by
  // take_hub_argument() when the command runs, so `--hub` and the positional hub mean the same.
  auto with_hub = [&](std::vector<std::string>& words, std::string& hub, size_t min_rest, size_t max_rest,
                      const char* usage, std::string& target, std::function<int()> run) {
    action = [&words, &hub, min_rest, max_rest, usage, &target, run = std::move(run)] {
      if (absl::Status s = bm::cli::take_hub_argument(words, hub, min_rest, max_rest, usage); !s.ok()) {
        std::fprintf(stderr, "bmserver: %s\n", std::string(s.message()).c_str());
        return bm::cli::kExitUsage;
      }
      if (!words.empty()) target = words.front();
      return run();
    };
  };
  auto add_words = [](CLI::App* command, std::vector<std::string>& words, const char* name, const char* help,
                      bool required) {
    CLI::Option* o =
        command->add_option(name, words, std::string("[hf|ms] ") + help + " (a leading hf or ms is the hub)");
    o->expected(required ? 1 : 0, 2);
    if (required) o->required();
  };
  auto add_hub = [](CLI::App* command, std::string& hub) {
    command->add_option("--hub", hub, "hf | ms (default: the daemon's BMSERVER_HUB, else hf)")
        ->check(CLI::IsMember({"hf", "ms"}));
  };
  // chat search / list / remove (cli/chat_store_commands.cpp)
  bm::cli::StoreArgs store_args;
  std::vector<std::string> store_words;
  auto add_store_options = [&](CLI::App* command) {
    add_words(command, store_words, "pattern", "glob on catalog names, e.g. 'qwen2.5-7b-*' (default: all)", false);
    add_hub(command, store_args.hub);
    command->add_option("--local-dir", store_args.local_dir, "local model store DIR/{org}/{name} (overrides --hub)");
  };
  auto add_filter_options = [&store_args](CLI::App* command) {
    command->add_option("--series", store_args.series, "only this series, e.g. qwen2.5-coder");
    command->add_option("--size", store_args.size, "only this size, e.g. 7B");
    command->add_option("--quant", store_args.quant, "only this quant: origin | gptq8 | gptq4 | awq");
  };
  auto store_action = [&](const char* usage, int (*run)(const GlobalOptions&, const bm::cli::StoreArgs&)) {
    return [&, usage, run] {
      with_hub(store_words, store_args.hub, 0, 1, usage, store_args.pattern,
               [&, run] { return run(global, store_args); });
    };
  };
  CLI::App* search = chat->add_subcommand("search", "search the catalog; marks what is downloaded");
  add_store_options(search);
  add_filter_options(search);
  search->callback(store_action("bmserver chat search [hf|ms] [PATTERN]", bm::cli::run_search));
  CLI::App* list =
      chat->add_subcommand("list", "list the catalog models in the store (downloaded, incomplete, corrupt)");
  add_store_options(list);
  add_filter_options(list);
  list->callback(store_action("bmserver chat list [hf|ms] [PATTERN]", bm::cli::run_list));
  CLI::App* remove_command = chat->add_subcommand("remove", "remove models from the store (asks unless -y)");
  add_store_options(remove_command);
  remove_command->add_flag("-y,--yes", store_args.yes, "remove without asking");
  remove_command->callback(store_action("bmserver chat remove [hf|ms] [PATTERN] [-y]", bm::cli::run_remove));
  // end of chat search / list / remove

  // chat download / update (cli/chat_download_commands.cpp)
  bm::cli::DownloadArgs download_args;
  std::vector<std::string> download_words;
  CLI::App* download =
      chat->add_subcommand("download", "download a model into the store (the daemon downloads; resumable)");
  add_words(download, download_words, "name", "catalog name (bmserver chat search)", true);
  add_hub(download, download_args.hub);
  download->add_option("--local-dir", download_args.local_dir, "write DIR/{org}/{name} instead of the hub cache");
  download->add_option("--revision", download_args.revision, "branch, tag or commit (default: main / master)");
  download->callback([&] {
    with_hub(download_words, download_args.hub, 1, 1, "bmserver chat download [hf|ms] NAME", download_args.name,
             [&] { return bm::cli::run_download(global, download_args); });
  });
  bm::cli::UpdateArgs update_args;
  std::vector<std::string> update_words;
  CLI::App* update = chat->add_subcommand("update", "fetch the newest commit of downloaded models (asks unless -y)");
  add_words(update, update_words, "pattern", "glob on catalog names (default: every downloaded model)", false);
  add_hub(update, update_args.hub);
  update->add_option("--local-dir", update_args.local_dir, "local model store DIR/{org}/{name} (overrides --hub)");
  update->add_flag("-y,--yes", update_args.yes, "update without asking");
  update->callback([&] {
    with_hub(update_words, update_args.hub, 0, 1, "bmserver chat update [hf|ms] [PATTERN] [-y]", update_args.pattern,
             [&] { return bm::cli::run_update(global, update_args); });
  });
  // end of chat download / update

  // The serve settings, one definition for `chat serve` and `chat benchmark` (which serves the model when the
  // daemon does not yet).
  auto add_serve_flags = [&](CLI::App* command, bm::cli::ServeFlags& f) {
    add_hub(command, f.hub);
    command->add_option("--local-dir", f.local_dir, "local model store DIR/{org}/{name}");
    command->add_option("--backend", f.backend, "auto | cuda | cpu")->check(CLI::IsMember({"auto", "cuda", "cpu"}));
    command->add_option("--gpus", f.gpus, "GPU indices; several are one tensor-parallel group, e.g. 0,1 (default: the first free GPU, or the first N free for --tensor-parallel-size N)")->delimiter(',');
    command
        ->add_option("--max-model-len", f.max_model_len, "context length (default: the model's, clipped to what fits)")
        ->check(CLI::Range(1, 1 << 24));
    command->add_option("--gpu-memory-utilization", f.gpu_memory_utilization, "fraction of GPU memory to use (0.9)")
        ->check(CLI::Range(0.05, 1.0));
    command->add_option("--max-num-seqs", f.max_num_seqs, "most sequences in a batch (256)")
        ->check(CLI::Range(1, 4096));
    command->add_option("--seed", f.seed, "random seed (2025); the benchmark's prompts use it too");
    command->add_option("--api-key", f.api_key, "require `Authorization: Bearer KEY` for this model");
    command->add_option("--kv-cache-bytes", f.kv_cache_bytes,
                        "cpu backend: KV cache size in bytes (default: automatic)");
    command
        ->add_option("--threads", f.threads,
                     "cpu backend: worker threads (default: every CPU of the daemon's affinity mask)")
        ->check(CLI::Range(1, 4096));
    command
        ->add_option("--tensor-parallel-size", f.tensor_parallel_size,
                     "split the model over N ranks (cpu backend: threads sharing --threads; default 1)")
        ->check(CLI::Range(1, 64));
    command
        ->add_option("--kv-cache-dtype", f.kv_cache_dtype,
                     "KV cache element type: auto (bfloat16) | bfloat16 | float32")
        ->check([](const std::string& v) {
          absl::StatusOr<std::string> name = bm::common::canonical_kv_cache_dtype(v);
          return name.ok() ? std::string() : std::string(name.status().message());
        });
    command->add_option("--limit-mm-per-prompt", f.limit_mm_per_prompt,
                        "media items per prompt, vLLM's JSON: '{\"image\": 4, \"video\": 1}' (default 999 each)");
    command->add_option("--mm-processor-kwargs", f.mm_processor_kwargs,
                        "image/video processor overrides: '{\"min_pixels\": N, \"max_pixels\": N, \"fps\": F}'");
    command->add_option("--allowed-local-media-path", f.allowed_local_media_path,
                        "requests may name image/video files under DIR (file:// or a path); none by default");
    command->add_option("--allowed-media-domains", f.allowed_media_domains,
                        "requests may fetch http(s) images/videos from these hosts: a.com,b.org; none by default");
    command->add_flag("--enforce-eager", f.enforce_eager,
                      "run every step op by op: no CUDA graphs for decode steps (as vLLM's flag)");
    command->add_option("--extra-params", f.extra_params,
                        "the original's vLLM engine arguments, e.g. \"--max-model-len 8192 --enforce-eager\" "
                        "(each maps to a setting here; others are refused)");
  };

  // chat serve / ps / stop
  bm::cli::ServeArgs serve_args;
  std::vector<std::string> serve_words;
  CLI::App* serve = chat->add_subcommand("serve", "load a model in the daemon and serve it on the OpenAI API");
  add_words(serve, serve_words, "name", "catalog name (bmserver chat search), or a model folder", true);
  add_serve_flags(serve, serve_args.serve);
  serve->add_option("--host", serve_args.host,
                    "also serve this model on its own listener at HOST (default 127.0.0.1 with --port)");
  serve->add_option("--port", serve_args.port, "also serve this model on its own listener at PORT")
      ->check(CLI::Range(1, 65535));
  serve->add_flag("--check", serve_args.check,
                  "print the plan (files, backend, GPU, memory, KV capacity, the full command) and load nothing");
  serve->callback([&] {
    with_hub(serve_words, serve_args.serve.hub, 1, 1, "bmserver chat serve [hf|ms] NAME", serve_args.name,
             [&] { return bm::cli::run_serve(global, serve_args); });
  });

  CLI::App* ps = chat->add_subcommand("ps", "list served models");
  ps->callback([&] { action = [&] { return bm::cli::run_ps(global); }; });

  std::string stop_name;
  CLI::App* stop = chat->add_subcommand("stop", "unload a served model");
  stop->add_option("name", stop_name, "catalog name or repo id of a served model")->required();
  stop->callback([&] { action = [&] { return bm::cli::run_stop(global, stop_name); }; });
  // chat benchmark [list | show | export] (cli/bench_commands.cpp)
  bm::cli::BenchmarkArgs bench_args;
  bm::cli::BenchmarkQueryArgs bench_query;
  std::vector<std::string> bench_words;
  CLI::App* bench =
      chat->add_subcommand("benchmark", "benchmark a chat model (or any OpenAI endpoint) over a concurrency sweep");
  add_words(bench, bench_words, "name",
            "catalog name or model folder (with --endpoint: the name to store results under)", false);
  add_serve_flags(bench, bench_args.serve);
  bench
      ->add_option("--prompt-tokens,--num-prompt-tokens", bench_args.prompt_tokens,
                   "prompt tokens per request, chat template included (500); repeatable or a comma list")
      ->delimiter(',');
  bench
      ->add_option("--completion-tokens,--num-completion-tokens", bench_args.completion_tokens,
                   "completion tokens per request, EOS ignored (500); repeatable or a comma list")
      ->delimiter(',');
  // The image workload. vLLM's `bench serve` spells it per dataset (random-mm's --random-mm-base-items-per-request
  // and --random-mm-bucket-config); ours is one workload of fixed synthetic images, so two plain names.
  bench->add_option("--images-per-prompt", bench_args.images_per_prompt,
                    "synthetic PNG images in each request's user message, before its text (0: text only)");
  bench->add_option("--image-size", bench_args.image_size,
                    "WIDTHxHEIGHT of those images in pixels (448x448); needs --images-per-prompt");
  bench->add_option("--endpoint", bench_args.endpoint,
                    "benchmark this OpenAI-compatible server (vLLM, SGLang, …) instead");
  bench->add_option("--model", bench_args.model, "model id at --endpoint (default: the first it lists)");
  bench->add_option("--max-concurrency", bench_args.max_concurrency, "--endpoint: sweep up to N (default: probe)")
      ->check(CLI::Range(1, 256));
  bench->add_flag("--no-store", bench_args.no_store, "measure and print only; store nothing");
  bench->add_flag("--upload", bench_args.upload,
                  "store the results in PostgreSQL (BMSERVER_POSTGRES_URL must be set), as the original");
  bench->add_option("--csv", bench_args.csv_file, "also write the results as CSV to FILE");
  bench->add_option("--plot", bench_args.plot_file,
                    "also write an SVG plot (throughput, latency vs concurrency) to FILE");
  bench->callback([&] {
    if (action) return;  // a subcommand (list, show, export) set it
    with_hub(bench_words, bench_args.serve.hub, 0, 1, "bmserver chat benchmark [hf|ms] NAME", bench_args.name, [&] {
      if (bench_args.name.empty() && bench_args.endpoint.empty()) {
        std::fprintf(stderr, "bmserver: name a model to benchmark, or give --endpoint URL\n");
        return bm::cli::kExitUsage;
      }
      return bm::cli::run_benchmark(global, bench_args);
    });
  });
  CLI::App* bench_list = bench->add_subcommand("list", "list the stored benchmark sweeps");
  bench_list->callback([&] { action = [&] { return bm::cli::run_benchmark_list(global, bench_query); }; });
  CLI::App* bench_show = bench->add_subcommand("show", "show every stored run of a model");
  bench_show->add_option("model", bench_query.model, "model name as stored")->required();
  bench_show->add_option("--csv", bench_query.csv_file, "also write the runs as CSV to FILE");
  bench_show->add_option("--plot", bench_query.plot_file, "also write an SVG plot to FILE");
  bench_show->callback([&] { action = [&] { return bm::cli::run_benchmark_show(global, bench_query); }; });
  CLI::App* bench_export = bench->add_subcommand("export", "export stored runs as CSV (or JSON with -o json)");
  bench_export->add_option("model", bench_query.model, "only this model (default: all)");
  bench_export->add_option("--csv", bench_query.csv_file, "write to FILE instead of stdout");
  bench_export->add_option("--plot", bench_query.plot_file, "also write an SVG plot to FILE");
  bench_export->callback([&] { action = [&] { return bm::cli::run_benchmark_export(global, bench_query); }; });
  // end of chat benchmark
  // ---- end of chat subcommands ----

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "bmserver: %s (see bmserver --help)\n", e.what());
    return bm::cli::kExitUsage;
  }
  global.output = output == "json" ? OutputFormat::kJson : OutputFormat::kTable;
  if (show_version) return bm::cli::run_version(global);
  if (!action) {
    std::printf("%s", app.help().c_str());
    return bm::cli::kExitUsage;
  }
  return action();
}
