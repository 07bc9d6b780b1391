#include "daemon/openai/model_listeners.h"

#include "absl/strings/str_cat.h"

namespace bm::daemon::openai {

ModelListeners::ModelListeners(ApiServerOptions base) : base_(std::move(base)) {}

ModelListeners::~ModelListeners() {
  close_all();
}

absl::Status ModelListeners::open(const std::shared_ptr<serving::ServedModel>& model) {
  auto listener = std::make_unique<Listener>();
  listener->registry.add(model);
  ApiServerOptions options = base_;
  options.http.host = model->settings.listen_host;
  options.http.port = static_cast<uint16_t>(model->settings.listen_port);
  listener->api = std::make_unique<ApiServer>(options, listener->registry);
  if (absl::Status s = listener->api->start(); !s.ok())
    return absl::UnavailableError(absl::StrCat("cannot serve '", model->name, "' on ", options.http.host, ":",
                                               options.http.port, " (--host/--port): ", s.message()));
  std::unique_ptr<Listener> previous;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    previous = std::exchange(listeners_[model->name], std::move(listener));
  }
  if (previous) previous->api->stop();
  return absl::OkStatus();
}

void ModelListeners::close(const std::string& name) {
  std::unique_ptr<Listener> listener;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = listeners_.find(name);
    if (it == listeners_.end()) return;
    listener = std::move(it->second);
    listeners_.erase(it);
  }
  listener->api->stop();  // outside the lock: stopping joins the listener's threads
}

void ModelListeners::close_all() {
  std::map<std::string, std::unique_ptr<Listener>> all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    all.swap(listeners_);
  }
  for (auto& [name, listener] : all) listener->api->stop();
}

}  // namespace bm::daemon::openai
