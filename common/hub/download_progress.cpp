#include "common/hub/download_progress.h"

namespace bm::common {

void ProgressTracker::set_totals(uint64_t bytes_total, uint32_t files_total) {
  std::lock_guard<std::mutex> lock(mu_);
  bytes_total_ = bytes_total;
  files_total_ = files_total;
}

void ProgressTracker::start_file(const std::string& path, uint64_t bytes_total, uint64_t bytes_present) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_[path] = FileProgress{path, bytes_present, bytes_total, false};
  bytes_done_ += bytes_present;
}

void ProgressTracker::add_bytes(const std::string& path, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_flight_.find(path);
  if (it != in_flight_.end()) it->second.bytes_done += bytes;
  bytes_done_ += bytes;
  bytes_fetched_ += bytes;
}

void ProgressTracker::reset_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_flight_.find(path);
  if (it == in_flight_.end()) return;
  bytes_done_ -= std::min(bytes_done_, it->second.bytes_done);
  it->second.bytes_done = 0;
}

void ProgressTracker::finish_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_flight_.find(path);
  if (it != in_flight_.end()) {
    // Count the file as whole even if the server sent fewer bytes than listed (verification decides).
    if (it->second.bytes_total > it->second.bytes_done) bytes_done_ += it->second.bytes_total - it->second.bytes_done;
    in_flight_.erase(it);
  }
  ++files_done_;
}

void ProgressTracker::skip_file(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  bytes_done_ += bytes;
  ++files_done_;
}

DownloadProgress ProgressTracker::snapshot(const std::string& phase) {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (!rate_started_) {
    rate_started_ = true;
    last_time_ = now;
    last_fetched_ = bytes_fetched_;
  } else {
    double seconds = std::chrono::duration<double>(now - last_time_).count();
    if (seconds >= 0.2) {
      double instant = static_cast<double>(bytes_fetched_ - last_fetched_) / seconds;
      // Smoothed so a bursty connection gives a readable rate and a steady ETA.
      rate_ = rate_ == 0 ? instant : 0.7 * rate_ + 0.3 * instant;
      last_time_ = now;
      last_fetched_ = bytes_fetched_;
    }
  }
  DownloadProgress report;
  report.phase = phase;
  report.bytes_done = std::min(bytes_done_, bytes_total_ > 0 ? bytes_total_ : bytes_done_);
  report.bytes_total = bytes_total_;
  report.files_done = files_done_;
  report.files_total = files_total_;
  report.bytes_per_second = rate_;
  uint64_t left = bytes_total_ > report.bytes_done ? bytes_total_ - report.bytes_done : 0;
  report.eta_seconds = left == 0 ? 0 : (rate_ > 1 ? static_cast<double>(left) / rate_ : -1);
  for (const auto& [path, file] : in_flight_) report.files.push_back(file);
  return report;
}

}  // namespace bm::common
