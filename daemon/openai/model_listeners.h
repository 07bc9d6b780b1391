#pragma once
// The original served each model on the --host/--port its `chat serve` named. Here every model is on the
// daemon's listener, and one served with --host/--port gets a listener of its own as well: an ApiServer over a
// registry that holds only that model (so "DEFAULT" names it there, as it did in the original).
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "daemon/openai/api_server.h"
#include "daemon/serving/served_model.h"

namespace bm::daemon::openai {

class ModelListeners {
 public:
  // `base`: the daemon listener's options (limits, origins, keys policy); host and port come from each model.
  explicit ModelListeners(ApiServerOptions base);
  ~ModelListeners();
  // Binds settings.listen_host:listen_port for the model; UNAVAILABLE with the reason when it cannot.
  absl::Status open(const std::shared_ptr<serving::ServedModel>& model);
  void close(const std::string& name);
  void close_all();

 private:
  struct Listener {
    serving::ModelRegistry registry;
    std::unique_ptr<ApiServer> api;
  };
  ApiServerOptions base_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Listener>> listeners_;  // by served name
};

}  // namespace bm::daemon::openai
