#include "daemon/control/serving_service.h"

#include <mutex>

#include "absl/strings/str_cat.h"
#include "daemon/control/serve_settings.h"

namespace bm::daemon::control {

void ServingService::fill(const serving::ServedModel& m, bmserver::v1::ServedModel* out) const {
  out->set_name(m.name);
  out->set_repo_id(m.repo_id);
  out->set_path(m.path);
  out->set_backend(m.backend);
  for (int32_t g : m.settings.gpus) out->add_gpus(g);
  switch (m.state()) {
    case serving::ModelState::kLoading:
      out->set_state("loading");
      break;
    case serving::ModelState::kReady:
      out->set_state("ready");
      break;
    case serving::ModelState::kFailed:
      out->set_state("failed");
      break;
  }
  out->set_error(m.error());
  out->set_weight_bytes(m.weight_bytes);
  out->set_quantization(m.quantization);
  out->set_kv_cache_bytes(m.kv_cache_bytes);
  out->set_tensor_parallel_size(m.ranks.empty() ? m.settings.tensor_parallel_size
                                                : static_cast<int32_t>(m.ranks.size()));
  for (const serving::RankMemory& r : m.ranks) {
    bmserver::v1::RankMemory* rank = out->add_ranks();
    rank->set_rank(r.rank);
    rank->set_gpu(r.gpu);
    rank->set_weight_bytes(static_cast<uint64_t>(r.weight_bytes));
    rank->set_kv_cache_bytes(static_cast<uint64_t>(r.kv_cache_bytes));
  }
  if (m.state() == serving::ModelState::kReady && m.generator) {
    serving::GeneratorStats s = m.generator->stats();
    out->set_kv_capacity_tokens(s.kv_capacity_tokens);
    out->set_max_model_len(m.generator->max_model_len());
    out->set_max_num_seqs(m.generator->max_num_seqs());
    out->set_num_running(static_cast<int32_t>(s.num_running));
    out->set_num_waiting(static_cast<int32_t>(s.num_waiting));
    out->set_kv_usage(s.num_kv_blocks ? static_cast<double>(s.num_kv_blocks_in_use) / s.num_kv_blocks : 0);
    if (!s.failure.empty()) {  // a device fault after loading: the daemon stays up, this engine serves nothing
      out->set_state("failed");
      out->set_error(s.failure);
    }
  }
  out->set_uptime_seconds(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - m.started_at).count());
  auto* o = out->mutable_options();
  o->set_backend(m.settings.backend);
  for (int32_t g : m.settings.gpus) o->add_gpus(g);
  o->set_max_model_len(m.settings.max_model_len);
  o->set_gpu_memory_utilization(m.settings.gpu_memory_utilization);
  o->set_max_num_seqs(m.settings.max_num_seqs);
  o->set_seed(m.settings.seed);
  o->set_kv_cache_bytes(m.settings.kv_cache_bytes);
  o->set_max_num_batched_tokens(m.settings.max_num_batched_tokens);
  o->set_enforce_eager(m.settings.enforce_eager);
  o->set_threads(m.settings.threads);
  o->set_kv_cache_dtype(m.settings.kv_cache_dtype);
  o->set_tensor_parallel_size(m.settings.tensor_parallel_size);
  o->set_disable_prefix_caching(!m.settings.enable_prefix_caching);
  o->set_limit_mm_per_prompt(m.settings.limit_mm_per_prompt);
  o->set_mm_processor_kwargs(m.settings.mm_processor_kwargs);
  o->set_allowed_local_media_path(m.settings.allowed_local_media_path);
  o->set_allowed_media_domains(m.settings.allowed_media_domains);
  o->set_extra_params(m.settings.extra_params);
  o->set_listen_host(m.settings.listen_host);
  o->set_listen_port(m.settings.listen_port);
  // The API key is a secret: never sent back.
  // A model with a listener of its own (--host/--port) is reached there first; the daemon's URL serves it too.
  out->set_http_url(m.settings.listen_port > 0 ? absl::StrCat("http://",
                                                              m.settings.listen_host.find(':') != std::string::npos
                                                                  ? "[" + m.settings.listen_host + "]"
                                                                  : m.settings.listen_host,
                                                              ":", m.settings.listen_port)
                                               : http_url_());
}

grpc::Status ServingService::Serve(grpc::ServerContext* context, const bmserver::v1::ServeRequest* request,
                                   grpc::ServerWriter<bmserver::v1::ServeEvent>* writer) {
  return guarded("Serving.Serve", [&] { return serve_model(context, request, writer); });
}

grpc::Status ServingService::serve_model(grpc::ServerContext* context, const bmserver::v1::ServeRequest* request,
                                         grpc::ServerWriter<bmserver::v1::ServeEvent>* writer) {
  if (request->name().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "name a model to serve");
  absl::StatusOr<serving::ServeSettings> settings = serve_settings_from_proto(request->store(), request->options());
  if (!settings.ok()) return to_grpc(settings.status());
  serving::ServeCommand command;
  command.name = request->name();
  command.settings = *std::move(settings);
  if (request->check()) {
    absl::StatusOr<std::string> plan = manager_.plan(command);
    if (!plan.ok()) return to_grpc(plan.status());
    bmserver::v1::ServeEvent event;
    event.set_phase("plan");
    event.set_message(absl::StrCat(*plan, "  command    ", serve_command_line(command.name, command.settings), "\n"));
    writer->Write(event);
    return grpc::Status::OK;
  }

  std::mutex writer_mutex;
  auto progress = [&](const serving::ServeProgress& p) {
    bmserver::v1::ServeEvent event;
    event.set_phase(p.phase);
    event.set_message(p.message);
    event.set_fraction(p.fraction);
    std::lock_guard<std::mutex> lock(writer_mutex);
    if (!context->IsCancelled()) writer->Write(event);
  };
  absl::StatusOr<std::shared_ptr<serving::ServedModel>> served = manager_.serve(command, progress);
  if (!served.ok()) return to_grpc(served.status());
  bmserver::v1::ServeEvent ready;
  ready.set_phase("ready");
  ready.set_message("ready");
  ready.set_fraction(1);
  fill(**served, ready.mutable_model());
  writer->Write(ready);
  return grpc::Status::OK;
}

grpc::Status ServingService::Stop(grpc::ServerContext*, const bmserver::v1::StopRequest* request,
                                  bmserver::v1::StopResponse* response) {
  return guarded("Serving.Stop", [&] {
    absl::StatusOr<std::shared_ptr<serving::ServedModel>> stopped = manager_.stop(request->name());
    if (!stopped.ok()) return to_grpc(stopped.status());
    fill(**stopped, response->mutable_model());
    return grpc::Status::OK;
  });
}

grpc::Status ServingService::List(grpc::ServerContext*, const bmserver::v1::ListServedRequest*,
                                  bmserver::v1::ListServedResponse* response) {
  return guarded("Serving.List", [&] {
    for (const auto& m : manager_.list()) fill(*m, response->add_models());
    return grpc::Status::OK;
  });
}

}  // namespace bm::daemon::control
