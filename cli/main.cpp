// bmserver: the thin CLI. It talks to bmserverd over gRPC only. CLI11 stays in this file (it costs seconds
// per translation unit): commands are defined here, their logic lives in cli/*_command(s).cpp.
#include <cstdio>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/bench_commands.h"
#include "cli/chat_download_commands.h"
#include "cli/chat_store_commands.h"
#include "cli/env_command.h"
#include "cli/exit_codes.h"
#include "cli/global_options.h"
#include "cli/serve_commands.h"
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
  // chat search / list / remove (cli/chat_store_commands.cpp)
  bm::cli::StoreArgs store_args;
  auto add_store_options = [&store_args](CLI::App* command) {
    command->add_option("pattern", store_args.pattern, "glob on catalog names, e.g. 'qwen2.5-7b-*' (default: all)");
    command->add_option("--hub", store_args.hub, "hf | ms (default: the daemon's BMSERVER_HUB, else hf)")
        ->check(CLI::IsMember({"hf", "ms"}));
    command->add_option("--local-dir", store_args.local_dir, "local model store DIR/{org}/{name} (overrides --hub)");
  };
  auto add_filter_options = [&store_args](CLI::App* command) {
    command->add_option("--series", store_args.series, "only this series, e.g. qwen2.5-coder");
    command->add_option("--size", store_args.size, "only this size, e.g. 7B");
    command->add_option("--quant", store_args.quant, "only this quant: origin | gptq8 | gptq4 | awq");
  };
  CLI::App* search = chat->add_subcommand("search", "search the catalog; marks what is downloaded");
  add_store_options(search);
  add_filter_options(search);
  search->callback([&] { action = [&] { return bm::cli::run_search(global, store_args); }; });
  CLI::App* list =
      chat->add_subcommand("list", "list the catalog models in the store (downloaded, incomplete, corrupt)");
  add_store_options(list);
  add_filter_options(list);
  list->callback([&] { action = [&] { return bm::cli::run_list(global, store_args); }; });
  CLI::App* remove_command = chat->add_subcommand("remove", "remove models from the store (asks unless -y)");
  add_store_options(remove_command);
  remove_command->add_flag("-y,--yes", store_args.yes, "remove without asking");
  remove_command->callback([&] { action = [&] { return bm::cli::run_remove(global, store_args); }; });
  // end of chat search / list / remove

  // chat download / update (cli/chat_download_commands.cpp)
  bm::cli::DownloadArgs download_args;
  CLI::App* download =
      chat->add_subcommand("download", "download a model into the store (the daemon downloads; resumable)");
  download->add_option("name", download_args.name, "catalog name (bmserver chat search)")->required();
  download->add_option("--hub", download_args.hub, "hf | ms (default: the daemon's BMSERVER_HUB, else hf)")
      ->check(CLI::IsMember({"hf", "ms"}));
  download->add_option("--local-dir", download_args.local_dir, "write DIR/{org}/{name} instead of the hub cache");
  download->add_option("--revision", download_args.revision, "branch, tag or commit (default: main / master)");
  download->callback([&] { action = [&] { return bm::cli::run_download(global, download_args); }; });
  bm::cli::UpdateArgs update_args;
  CLI::App* update = chat->add_subcommand("update", "fetch the newest commit of downloaded models (asks unless -y)");
  update->add_option("pattern", update_args.pattern, "glob on catalog names (default: every downloaded model)");
  update->add_option("--hub", update_args.hub, "hf | ms (default: the daemon's BMSERVER_HUB, else hf)")
      ->check(CLI::IsMember({"hf", "ms"}));
  update->add_option("--local-dir", update_args.local_dir, "local model store DIR/{org}/{name} (overrides --hub)");
  update->add_flag("-y,--yes", update_args.yes, "update without asking");
  update->callback([&] { action = [&] { return bm::cli::run_update(global, update_args); }; });
  // end of chat download / update

  // chat serve / ps / stop
  bm::cli::ServeArgs serve_args;
  CLI::App* serve = chat->add_subcommand("serve", "load a model in the daemon and serve it on the OpenAI API");
  serve->add_option("name", serve_args.name, "catalog name (bmserver chat search), or a model folder")->required();
  serve->add_option("--hub", serve_args.hub, "hf | ms (default: BMSERVER_HUB, else hf)")
      ->check(CLI::IsMember({"hf", "ms"}));
  serve->add_option("--local-dir", serve_args.local_dir, "local model store DIR/{org}/{name}");
  serve->add_option("--backend", serve_args.backend, "auto | cuda | cpu")
      ->check(CLI::IsMember({"auto", "cuda", "cpu"}));
  serve->add_option("--gpus", serve_args.gpus, "GPU indices, e.g. 0,1 (default: all the daemon sees)")->delimiter(',');
  serve
      ->add_option("--max-model-len", serve_args.max_model_len,
                   "context length (default: the model's, clipped to what fits)")
      ->check(CLI::Range(1, 1 << 24));
  serve
      ->add_option("--gpu-memory-utilization", serve_args.gpu_memory_utilization, "fraction of GPU memory to use (0.9)")
      ->check(CLI::Range(0.05, 1.0));
  serve->add_option("--max-num-seqs", serve_args.max_num_seqs, "most sequences in a batch (256)")
      ->check(CLI::Range(1, 4096));
  serve->add_option("--seed", serve_args.seed, "random seed (2025)");
  serve->add_option("--api-key", serve_args.api_key, "require `Authorization: Bearer KEY` for this model");
  serve->add_option("--kv-cache-bytes", serve_args.kv_cache_bytes,
                    "cpu backend: KV cache size in bytes (default: automatic)");
  serve->add_flag("--enforce-eager", serve_args.enforce_eager,
                  "run every step op by op: no CUDA graphs for decode steps (as vLLM's flag)");
  serve->callback([&] { action = [&] { return bm::cli::run_serve(global, serve_args); }; });

  CLI::App* ps = chat->add_subcommand("ps", "list served models");
  ps->callback([&] { action = [&] { return bm::cli::run_ps(global); }; });

  std::string stop_name;
  CLI::App* stop = chat->add_subcommand("stop", "unload a served model");
  stop->add_option("name", stop_name, "catalog name or repo id of a served model")->required();
  stop->callback([&] { action = [&] { return bm::cli::run_stop(global, stop_name); }; });
  // chat benchmark [list | show | export] (cli/bench_commands.cpp)
  bm::cli::BenchmarkArgs bench_args;
  bm::cli::BenchmarkQueryArgs bench_query;
  CLI::App* bench =
      chat->add_subcommand("benchmark", "benchmark a chat model (or any OpenAI endpoint) over a concurrency sweep");
  bench->add_option("name", bench_args.name,
                    "catalog name or model folder (with --endpoint: the name to store results under)");
  bench->add_option("--hub", bench_args.hub, "hf | ms (default: BMSERVER_HUB, else hf)")
      ->check(CLI::IsMember({"hf", "ms"}));
  bench->add_option("--local-dir", bench_args.local_dir, "local model store DIR/{org}/{name}");
  bench
      ->add_option("--prompt-tokens", bench_args.prompt_tokens,
                   "prompt tokens per request, chat template included (500)")
      ->delimiter(',');
  bench
      ->add_option("--completion-tokens", bench_args.completion_tokens,
                   "completion tokens per request, EOS ignored (500)")
      ->delimiter(',');
  bench->add_option("--seed", bench_args.seed, "random seed for prompts and the engine (2025)");
  bench->add_option("--backend", bench_args.backend, "auto | cuda | cpu (when the model is not served yet)")
      ->check(CLI::IsMember({"auto", "cuda", "cpu"}));
  bench->add_option("--gpus", bench_args.gpus, "GPU indices, e.g. 0,1")->delimiter(',');
  bench->add_option("--max-model-len", bench_args.max_model_len, "context length")->check(CLI::Range(1, 1 << 24));
  bench->add_option("--gpu-memory-utilization", bench_args.gpu_memory_utilization, "fraction of GPU memory (0.9)")
      ->check(CLI::Range(0.05, 1.0));
  bench->add_option("--max-num-seqs", bench_args.max_num_seqs, "most sequences in a batch (256)")
      ->check(CLI::Range(1, 4096));
  bench->add_option("--kv-cache-bytes", bench_args.kv_cache_bytes, "cpu backend: KV cache size in bytes");
  bench->add_flag("--enforce-eager", bench_args.enforce_eager, "no CUDA graphs for decode steps");
  bench->add_option("--api-key", bench_args.api_key, "API key of the served model or of --endpoint");
  bench->add_option("--endpoint", bench_args.endpoint,
                    "benchmark this OpenAI-compatible server (vLLM, SGLang, …) instead");
  bench->add_option("--model", bench_args.model, "model id at --endpoint (default: the first it lists)");
  bench->add_option("--max-concurrency", bench_args.max_concurrency, "--endpoint: sweep up to N (default: probe)")
      ->check(CLI::Range(1, 256));
  bench->add_flag("--no-store", bench_args.no_store, "measure and print only; store nothing");
  bench->add_option("--csv", bench_args.csv_file, "also write the results as CSV to FILE");
  bench->add_option("--plot", bench_args.plot_file,
                    "also write an SVG plot (throughput, latency vs concurrency) to FILE");
  bench->callback([&] {
    if (!action)
      action = [&] {
        if (bench_args.name.empty() && bench_args.endpoint.empty()) {
          std::fprintf(stderr, "bmserver: name a model to benchmark, or give --endpoint URL\n");
          return bm::cli::kExitUsage;
        }
        return bm::cli::run_benchmark(global, bench_args);
      };
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
