// Models.Download and Models.Update: the daemon owns the store, so it downloads (common/hub/) and streams the
// progress to the CLI. A client that goes away (Ctrl-C) cancels the download; partial files stay for a
// resume.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/catalog/catalog.h"
#include "common/hub/downloader.h"
#include "common/identifier_checks.h"
#include "common/store/model_store.h"
#include "common/store/store_roots.h"
#include "daemon/control/download_options.h"
#include "daemon/control/models_service.h"
#include "daemon/control/rpc_status.h"
#include "daemon/control/store_selector.h"

namespace bm::daemon::control {
namespace {

namespace v1 = bmserver::v1;

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t next = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = row[j];
      row[j] = next;
    }
  }
  return row[b.size()];
}

// The catalog names nearest to a mistyped one, closest first.
std::vector<std::string> close_names(const std::string& name) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const common::CatalogEntry& entry : common::catalog()) {
    size_t distance = edit_distance(name, entry.name);
    if (entry.name.find(name) != std::string::npos) distance = std::min<size_t>(distance, 2);
    scored.emplace_back(distance, entry.name);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> names;
  size_t limit = std::max<size_t>(3, name.size() / 3);
  for (const auto& [distance, candidate] : scored) {
    if (distance > limit || names.size() == 5) break;
    names.push_back(candidate);
  }
  return names;
}

absl::StatusOr<const common::CatalogEntry*> find_entry(const std::string& name) {
  if (const common::CatalogEntry* entry = common::find_catalog_entry(name)) return entry;
  for (const common::CatalogEntry& entry : common::catalog()) {
    if (entry.hf_repo_id == name || entry.ms_repo_id == name) return &entry;
  }
  std::vector<std::string> near = close_names(name);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model \"", name, "\"",
                   near.empty() ? "" : absl::StrCat("; did you mean ", absl::StrJoin(near, ", "), "?"),
                   " (bmserver chat search lists every name)"));
}

v1::DownloadEvent to_event(const std::string& name, const common::DownloadProgress& progress) {
  v1::DownloadEvent event;
  event.set_name(name);
  event.set_phase(progress.phase);
  event.set_commit(progress.commit);
  event.set_bytes_done(progress.bytes_done);
  event.set_bytes_total(progress.bytes_total);
  event.set_files_done(progress.files_done);
  event.set_files_total(progress.files_total);
  event.set_bytes_per_second(progress.bytes_per_second);
  event.set_eta_seconds(progress.eta_seconds);
  for (const common::FileProgress& file : progress.files) {
    v1::FileProgress* out = event.add_files();
    out->set_path(file.path);
    out->set_bytes_done(file.bytes_done);
    out->set_bytes_total(file.bytes_total);
    out->set_done(file.done);
  }
  event.set_message(progress.message);
  event.set_snapshot_path(progress.snapshot_path);
  return event;
}

// Sets `cancel` when the client goes away (its Ctrl-C cancels the RPC).
class CancelWatch {
 public:
  explicit CancelWatch(grpc::ServerContext* context) {
    thread_ = std::thread([this, context] {
      while (!done_.load()) {
        if (context->IsCancelled()) {
          cancel.store(true);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  ~CancelWatch() {
    done_.store(true);
    thread_.join();
  }
  std::atomic<bool> cancel{false};

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

absl::Status download_one(const std::string& name, const common::DownloadOptions& options,
                          grpc::ServerWriter<v1::DownloadEvent>* writer, CancelWatch& watch) {
  spdlog::info("downloading {} ({}) from {} into {}", name, options.repo_id, options.hub.endpoint, options.root);
  absl::StatusOr<common::DownloadResult> result = absl::InternalError("not run");
  // Nothing a hub sends or a cache holds may take the daemon down: an exception ends this download only.
  try {
    result = common::download_snapshot(
        options,
        [&](const common::DownloadProgress& progress) {
          if (!writer->Write(to_event(name, progress))) watch.cancel.store(true);
        },
        &watch.cancel);
  } catch (const std::exception& e) {
    result = absl::InternalError(absl::StrCat("the download of ", name, " failed: ", e.what()));
  }
  if (!result.ok()) {
    spdlog::warn("download of {} failed: {}", name, std::string(result.status().message()));
    return result.status();
  }
  spdlog::info("{}", result->message);
  return absl::OkStatus();
}

}  // namespace

grpc::Status ModelsService::Download(grpc::ServerContext* context, const v1::DownloadRequest* request,
                                     grpc::ServerWriter<v1::DownloadEvent>* writer) {
  return guarded("Models.Download", [&] { return download(context, request, writer); });
}

grpc::Status ModelsService::download(grpc::ServerContext* context, const v1::DownloadRequest* request,
                                     grpc::ServerWriter<v1::DownloadEvent>* writer) {
  // The revision becomes refs/<revision> under the store root: its form is checked before anything is fetched.
  if (absl::Status s = common::check_revision(request->revision()); !s.ok()) return to_grpc(s);
  absl::StatusOr<const common::CatalogEntry*> entry = find_entry(request->name());
  if (!entry.ok()) return to_grpc(entry.status());
  absl::StatusOr<common::StoreRoots> roots = store_roots_for(request->store());
  if (!roots.ok()) return to_grpc(roots.status());
  std::string hub = request->store().hub().empty() ? roots->default_hub : request->store().hub();
  absl::StatusOr<common::Hub> parsed = common::parse_hub(hub);
  if (!parsed.ok()) return to_grpc(parsed.status());
  absl::StatusOr<common::DownloadOptions> options =
      download_options_for(request->store(), (*entry)->repo_id(*parsed), request->revision());
  if (!options.ok()) return to_grpc(options.status());
  CancelWatch watch(context);
  return to_grpc(download_one((*entry)->name, *options, writer, watch));
}

grpc::Status ModelsService::Update(grpc::ServerContext* context, const v1::UpdateRequest* request,
                                   grpc::ServerWriter<v1::DownloadEvent>* writer) {
  return guarded("Models.Update", [&] { return update(context, request, writer); });
}

grpc::Status ModelsService::update(grpc::ServerContext* context, const v1::UpdateRequest* request,
                                   grpc::ServerWriter<v1::DownloadEvent>* writer) {
  if (!request->store().local_dir().empty())
    if (absl::Status s = common::check_client_path(request->store().local_dir(), "--local-dir"); !s.ok())
      return to_grpc(s);
  absl::StatusOr<common::StoreRoots> resolved_roots = store_roots_for(request->store());
  if (!resolved_roots.ok()) return to_grpc(resolved_roots.status());
  const common::StoreRoots& roots = *resolved_roots;
  absl::StatusOr<std::unique_ptr<common::ModelStore>> store =
      common::open_model_store(request->store().hub(), request->store().local_dir(), roots);
  if (!store.ok()) return to_grpc(store.status());
  common::CatalogFilter filter;
  filter.pattern = request->pattern();
  absl::StatusOr<std::vector<const common::CatalogEntry*>> entries = common::search_catalog(filter);
  if (!entries.ok()) return to_grpc(entries.status());
  std::string hub = request->store().hub().empty() ? roots.default_hub : request->store().hub();
  common::Hub kind = hub == "ms" ? common::Hub::kModelScope : common::Hub::kHuggingFace;
  CancelWatch watch(context);
  int num_present = 0;
  absl::Status first_error;
  for (const common::CatalogEntry* entry : *entries) {
    const std::string& repo_id = entry->repo_id(kind);
    if (!(*store)->find(repo_id).has_value()) continue;
    ++num_present;
    absl::StatusOr<common::DownloadOptions> options = download_options_for(request->store(), repo_id, "");
    if (!options.ok()) return to_grpc(options.status());
    options->drop_previous = true;
    if (request->dry_run()) {
      absl::StatusOr<common::UpdateCheck> check = absl::InternalError("not run");
      try {
        check = common::check_snapshot(*options, &watch.cancel);
      } catch (const std::exception& e) {
        check = absl::InternalError(absl::StrCat("checking ", entry->name, " failed: ", e.what()));
      }
      if (!check.ok()) {
        if (first_error.ok()) first_error = check.status();
        continue;
      }
      v1::DownloadEvent event;
      event.set_name(entry->name);
      event.set_commit(check->remote_commit);
      event.set_phase(check->up_to_date ? "up-to-date" : "update-available");
      event.set_bytes_total(check->bytes_to_fetch);
      event.set_files_total(check->files_to_fetch);
      event.set_message(check->up_to_date
                            ? absl::StrCat(entry->name, " is up to date at ", check->remote_commit, ".")
                            : absl::StrCat(entry->name, ": ",
                                           check->current_commit.empty() ? "incomplete" : check->current_commit, " -> ",
                                           check->remote_commit, ", ", check->files_to_fetch, " files to fetch."));
      writer->Write(event);
      continue;
    }
    absl::Status status = download_one(entry->name, *options, writer, watch);
    if (absl::IsCancelled(status)) return to_grpc(status);
    if (!status.ok() && first_error.ok()) first_error = status;
  }
  if (num_present == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no downloaded model matches \"", request->pattern(), "\" in ", (*store)->root(),
                                     " (bmserver chat list shows what is there)"));
  }
  return to_grpc(first_error);
}

}  // namespace bm::daemon::control
