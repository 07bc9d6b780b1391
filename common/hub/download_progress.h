#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace bm::common {

struct FileProgress {
  std::string path;
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  bool done = false;
};

// One progress report. Phases: resolving, listing, downloading, verifying, committing, done, up-to-date.
struct DownloadProgress {
  std::string phase;
  std::string commit;
  uint64_t bytes_done = 0;  // includes bytes already on disk (resumed or reused)
  uint64_t bytes_total = 0;
  uint32_t files_done = 0;
  uint32_t files_total = 0;
  double bytes_per_second = 0;      // of bytes fetched in this run
  double eta_seconds = -1;          // -1: unknown
  std::vector<FileProgress> files;  // in flight
  std::string message;
  std::string snapshot_path;
};

using ProgressCallback = std::function<void(const DownloadProgress&)>;

// Counts bytes from the worker threads; `snapshot()` turns them into a report with a smoothed rate and ETA.
class ProgressTracker {
 public:
  void set_totals(uint64_t bytes_total, uint32_t files_total);
  void start_file(const std::string& path, uint64_t bytes_total, uint64_t bytes_present);
  void add_bytes(const std::string& path, uint64_t bytes);
  // Bytes discarded (a failed verification restarts a file).
  void reset_file(const std::string& path);
  void finish_file(const std::string& path);
  // A file that needed no download (already in the store).
  void skip_file(uint64_t bytes);
  DownloadProgress snapshot(const std::string& phase);

 private:
  std::mutex mu_;
  uint64_t bytes_total_ = 0;
  uint64_t bytes_done_ = 0;
  uint64_t bytes_fetched_ = 0;
  uint32_t files_total_ = 0;
  uint32_t files_done_ = 0;
  std::map<std::string, FileProgress> in_flight_;
  bool rate_started_ = false;
  std::chrono::steady_clock::time_point last_time_;
  uint64_t last_fetched_ = 0;
  double rate_ = 0;
};

}  // namespace bm::common
