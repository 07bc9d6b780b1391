#include "daemon/serving/served_model.h"

#include <algorithm>

namespace bm::daemon::serving {

std::string ServedModel::error() const {
  std::lock_guard<std::mutex> lock(error_mutex_);
  return error_;
}

void ServedModel::set_failed(std::string error) {
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    error_ = std::move(error);
  }
  state_ = ModelState::kFailed;
}

std::shared_ptr<ServedModel> ModelRegistry::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& m : models_)
    if (m->answers_to(id)) return m;
  return nullptr;
}

std::vector<std::shared_ptr<ServedModel>> ModelRegistry::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return models_;
}

void ModelRegistry::add(std::shared_ptr<ServedModel> model) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_.push_back(std::move(model));
}

std::shared_ptr<ServedModel> ModelRegistry::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(models_.begin(), models_.end(), [&](const auto& m) { return m->answers_to(id); });
  if (it == models_.end()) return nullptr;
  std::shared_ptr<ServedModel> removed = *it;
  models_.erase(it);
  return removed;
}

std::unique_ptr<Admission> Admission::try_admit(std::shared_ptr<ServedModel> model, int64_t num_seqs, int64_t limit) {
  int64_t current = model->admitted_seqs.load();
  do {
    if (current + num_seqs > limit) return nullptr;
  } while (!model->admitted_seqs.compare_exchange_weak(current, current + num_seqs));
  return std::unique_ptr<Admission>(new Admission(std::move(model), num_seqs));
}

Admission::~Admission() {
  model_->admitted_seqs -= num_seqs_;
}

}  // namespace bm::daemon::serving
