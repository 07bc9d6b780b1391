// Encode throughput of the tokenizer on the committed corpus, single thread: prints MB/s for each tokenizer.
// Compare with tests/tools/tokenizer_bench_hf.py (Hugging Face `tokenizers`, same corpus, same records).
//
// Usage: bm_tokenizer_bench [--repeat N] [--model-dir DIR]...   (default: the two shared tokenizers)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
constexpr std::string_view kSeparator = "\n=====bmserver-tokenizer-record=====\n";

fs::path env_or(const char* name, const fs::path& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? fs::path(v) : fallback;
}

std::vector<std::string> read_records(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  const std::string text = s.str();
  std::vector<std::string> records;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(kSeparator, start);
    records.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + kSeparator.size();
  }
  return records;
}

// The assembled Llama tokenizer is a single file: give it a folder of links, as the tests do.
fs::path llama_dir(const fs::path& shared) {
  const fs::path dir = fs::temp_directory_path() / "bm_tokenizer_bench_llama";
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::remove(dir / "tokenizer.json", ec);  // a link left by an earlier run may point elsewhere
  fs::create_symlink(fs::absolute(shared) / "tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json",
                     dir / "tokenizer.json", ec);
  return dir;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void bench(const fs::path& dir, const std::vector<std::string>& records, size_t num_bytes, int repeat) {
  auto start = std::chrono::steady_clock::now();
  auto tok = bm::engine::Tokenizer::load(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tok.status().message()).c_str());
    std::exit(1);
  }
  const double load_s = seconds_since(start);
  size_t num_ids = 0;
  std::vector<std::vector<int32_t>> all_ids(records.size());
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    start = std::chrono::steady_clock::now();
    num_ids = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      all_ids[i] = (*tok)->encode(records[i], false);
      num_ids += all_ids[i].size();
    }
    best = std::min(best, seconds_since(start));
  }
  start = std::chrono::steady_clock::now();
  size_t decoded = 0;
  for (const auto& ids : all_ids) decoded += (*tok)->decode(ids, false).size();
  const double decode_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  size_t streamed = 0;
  for (const auto& ids : all_ids) {
    bm::engine::IncrementalDetokenizer detok(**tok, false);
    for (int32_t id : ids) streamed += detok.push(id).size();
    streamed += detok.flush().size();
  }
  const double stream_s = seconds_since(start);
  const double mb = static_cast<double>(num_bytes) / 1e6;
  std::printf("%-60s load %.2f s | encode %.2f MB/s (%zu ids, best of %d) | decode %.1f MB/s | stream %.1f MB/s\n",
              dir.string().c_str(), load_s, mb / best, num_ids, repeat, static_cast<double>(decoded) / 1e6 / decode_s,
              static_cast<double>(streamed) / 1e6 / stream_s);
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path source = env_or("BMSERVER_SOURCE_DIR", BM_SOURCE_DIR);
  const fs::path shared = env_or("BMSERVER_SHARED_MODELS", source / "../shared/models");
  int repeat = 3;
  std::vector<fs::path> dirs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--repeat" && i + 1 < argc) {
      repeat = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--model-dir" && i + 1 < argc) {
      dirs.emplace_back(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--repeat N] [--model-dir DIR]...\n", argv[0]);
      return 2;
    }
  }
  if (dirs.empty()) dirs = {shared / "Qwen/Qwen2.5-7B-Instruct", llama_dir(shared)};
  const std::vector<std::string> records = read_records(source / "tests/data/tokenizer/corpus.txt");
  size_t num_bytes = 0;
  for (const auto& r : records) num_bytes += r.size();
  std::printf("corpus: %zu records, %.2f MB\n", records.size(), static_cast<double>(num_bytes) / 1e6);
  for (const fs::path& dir : dirs) bench(dir, records, num_bytes, repeat);
  return 0;
}
