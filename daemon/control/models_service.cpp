#include "daemon/control/models_service.h"

#include "daemon/control/store_selector.h"

#include <exception>
#include <memory>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/catalog/catalog.h"
#include "common/identifier_checks.h"
#include "common/size_format.h"
#include "common/store/model_store.h"
#include "common/store/store_roots.h"
#include "daemon/control/download_options.h"
#include "daemon/control/rpc_status.h"

namespace bm::daemon::control {
namespace {

namespace v1 = bmserver::v1;

void fill_entry(const common::CatalogEntry& entry, v1::CatalogEntry* out) {
  out->set_name(entry.name);
  out->set_series(entry.series);
  out->set_modality(entry.modality);
  out->set_size_b(entry.size_b);
  out->set_quant(std::string(common::original_quant_value(entry.quant)));
  out->set_tool_call(entry.tool_call);
  out->set_reasoning(entry.reasoning);
  out->set_hf_repo_id(entry.hf_repo_id);
  out->set_ms_repo_id(entry.ms_repo_id);
}

void fill_stored(const common::StoredModel& model, v1::StoredModel* out) {
  out->set_state(std::string(common::stored_state_name(model.state)));
  out->set_reason(model.reason);
  out->set_size_on_disk(model.size_on_disk);
  out->set_num_files(model.num_files);
  out->set_revision(model.revision);
  out->set_repo_path(model.repo_path);
  out->set_snapshot_path(model.snapshot_path);
  out->set_last_modified_unix(model.last_modified_unix);
  out->set_last_accessed_unix(model.last_accessed_unix);
}

struct Match {
  const common::CatalogEntry* entry;
  std::string repo_id;
  std::optional<common::StoredModel> stored;
};

struct Scan {
  std::unique_ptr<common::ModelStore> store;
  std::vector<Match> matches;
};

absl::StatusOr<Scan> scan(const v1::StoreSelector& selector, const common::CatalogFilter& filter) {
  if (!selector.local_dir().empty())
    if (absl::Status s = common::check_client_path(selector.local_dir(), "--local-dir"); !s.ok()) return s;
  absl::StatusOr<common::StoreRoots> resolved_roots = store_roots_for(selector);
  if (!resolved_roots.ok()) return resolved_roots.status();
  const common::StoreRoots& roots = *resolved_roots;
  absl::StatusOr<std::unique_ptr<common::ModelStore>> store =
      common::open_model_store(selector.hub(), selector.local_dir(), roots);
  if (!store.ok()) return store.status();
  absl::StatusOr<std::vector<const common::CatalogEntry*>> entries = common::search_catalog(filter);
  if (!entries.ok()) return entries.status();
  // A local store is addressed by the repo id of the selected hub (identical on both for the whole catalog).
  absl::StatusOr<common::Hub> hub = common::parse_hub(selector.hub().empty() ? roots.default_hub : selector.hub());
  if (!hub.ok()) return hub.status();
  Scan result{*std::move(store), {}};
  for (const common::CatalogEntry* entry : *entries) {
    const std::string& repo_id = entry->repo_id(*hub);
    result.matches.push_back({entry, repo_id, result.store->find(repo_id)});
  }
  return result;
}

grpc::Status search(const v1::SearchRequest& request, bool stored_only, v1::SearchResponse* response) {
  common::CatalogFilter filter{request.pattern(), request.series(), request.size(), request.quant()};
  absl::StatusOr<Scan> found = scan(request.store(), filter);
  if (!found.ok()) return to_grpc(found.status());
  response->set_store_kind(found->store->kind());
  response->set_store_root(found->store->root());
  response->set_store_root_exists(found->store->root_exists());
  for (const Match& match : found->matches) {
    if (stored_only && !match.stored) continue;
    v1::ModelRow* row = response->add_rows();
    fill_entry(*match.entry, row->mutable_entry());
    row->set_repo_id(match.repo_id);
    row->set_downloaded(match.stored && match.stored->state == common::StoredState::kDownloaded);
    if (match.stored) fill_stored(*match.stored, row->mutable_stored());
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status ModelsService::Search(grpc::ServerContext*, const v1::SearchRequest* request,
                                   v1::SearchResponse* response) {
  return guarded("Models.Search", [&] { return search(*request, /*stored_only=*/false, response); });
}

grpc::Status ModelsService::List(grpc::ServerContext*, const v1::SearchRequest* request, v1::SearchResponse* response) {
  return guarded("Models.List", [&] { return search(*request, /*stored_only=*/true, response); });
}

grpc::Status ModelsService::Remove(grpc::ServerContext*, const v1::RemoveRequest* request,
                                   v1::RemoveResponse* response) {
  return guarded("Models.Remove", [&]() -> grpc::Status {
    std::lock_guard<std::mutex> lock(remove_mutex_);
    absl::StatusOr<Scan> found = scan(request->store(), common::CatalogFilter{request->pattern(), "", "", ""});
    if (!found.ok()) return to_grpc(found.status());
    std::vector<const Match*> present;
    for (const Match& match : found->matches)
      if (match.stored) present.push_back(&match);
    std::string pattern = request->pattern().empty() ? "*" : request->pattern();
    if (present.empty())
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no model matching '", pattern, "' is in the ", found->store->kind(),
                                       " store at ", found->store->root()));
    for (const Match* match : present)
      if (is_served_ && is_served_(match->entry->name, match->repo_id))
        return grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            absl::StrCat(match->entry->name, " is being served; stop it first with `bmserver chat stop ",
                         match->entry->name, "`"));
    // A download writing one of them holds its repo lock: refuse rather than delete a tree under it.
    std::vector<common::FileLock> download_locks;
    for (const Match* match : present) {
      if (request->dry_run()) break;
      absl::StatusOr<common::DownloadOptions> options = download_options_for(request->store(), match->repo_id, "");
      if (!options.ok()) return to_grpc(options.status());
      absl::StatusOr<common::FileLock> lock = common::lock_for_removal(*options);
      if (!lock.ok()) return to_grpc(lock.status());
      download_locks.push_back(*std::move(lock));
    }
    uint64_t total = 0;
    for (const Match* match : present) {
      if (!request->dry_run()) {
        if (absl::Status removed = found->store->remove(*match->stored); !removed.ok()) return to_grpc(removed);
        spdlog::info("removed {} ({}) from {}, {} freed", match->entry->name, match->repo_id, match->stored->repo_path,
                     common::format_size(match->stored->size_on_disk));
      }
      v1::RemovedModel* out = response->add_models();
      out->set_name(match->entry->name);
      out->set_repo_id(match->repo_id);
      out->set_path(match->stored->repo_path);
      out->set_bytes_freed(match->stored->size_on_disk);
      total += match->stored->size_on_disk;
    }
    response->set_total_bytes_freed(total);
    return grpc::Status::OK;
  });
}

}  // namespace bm::daemon::control
