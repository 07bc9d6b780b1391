#pragma once
// A Backend that hands every op to another one: tests derive from it to change or hide a few ops (a backend
// without the encoder ops, encoder ops run by emulated CUDA launchers) and keep the rest real. The optional op
// families (encoder ops, collectives) are not forwarded: a derived class that wants them says so.
#include "engine/backend/backend.h"

namespace bm::engine::testing {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : inner_(inner) {}
  MemoryInfo memory_info() const override { return inner_.memory_info(); }
  absl::StatusOr<std::unique_ptr<Buffer>> allocate(int64_t n) override { return inner_.allocate(n); }
  void copy_to_device(std::span<const std::byte> s, const Tensor& d) override { inner_.copy_to_device(s, d); }
  void copy_linear_weight_to_device(std::span<const std::byte> s, const Tensor& d) override {
    inner_.copy_linear_weight_to_device(s, d);
  }
  void copy_to_host(const Tensor& s, std::span<std::byte> d) override { inner_.copy_to_host(s, d); }
  void synchronize() override { inner_.synchronize(); }
  void replay(const StepGraph& g) override { inner_.replay(g); }
  void embedding(const Tensor& a, const Tensor& b, const Tensor& c) override { inner_.embedding(a, b, c); }
  void rms_norm(const Tensor& a, const Tensor& b, float e, const Tensor& c) override { inner_.rms_norm(a, b, e, c); }
  void add_rms_norm(const Tensor& a, const Tensor& b, const Tensor& c, float e, const Tensor& d) override {
    inner_.add_rms_norm(a, b, c, e, d);
  }
  void linear(const Tensor& a, const Tensor& b, const Tensor* c, const Tensor& d) override {
    inner_.linear(a, b, c, d);
  }
  void rope(const Tensor& a, const Tensor& b, const Tensor& c, int32_t h) override { inner_.rope(a, b, c, h); }
  void store_kv(const Tensor& a, const Tensor& b, const Tensor& c, const KvCacheLayer& d) override {
    inner_.store_kv(a, b, c, d);
  }
  void paged_attention(const Tensor& a, const KvCacheLayer& b, const AttentionMetadata& c, const AttentionShape& d,
                       const Tensor& e) override {
    inner_.paged_attention(a, b, c, d, e);
  }
  void rope_store_kv(const Tensor& a, const RotaryAngles& b, const AttentionShape& c, const Tensor& d,
                     const KvCacheLayer& e, const Tensor& f) override {
    inner_.rope_store_kv(a, b, c, d, e, f);
  }
  void silu_mul(const Tensor& a, const Tensor& b, const Tensor& c) override { inner_.silu_mul(a, b, c); }
  void silu_mul_fused(const Tensor& a, const Tensor& b) override { inner_.silu_mul_fused(a, b); }
  void add(const Tensor& a, const Tensor& b, const Tensor& c) override { inner_.add(a, b, c); }
  void gather_rows(const Tensor& a, const Tensor& b, const Tensor& c) override { inner_.gather_rows(a, b, c); }
  void top_candidates(const Tensor& a, const Tensor& b, const Tensor& c, int32_t k, const Tensor& d, const Tensor& e,
                      const Tensor& f, const Tensor& g, const Tensor& h, const Tensor& i, const Tensor& j,
                      const Tensor& l) override {
    inner_.top_candidates(a, b, c, k, d, e, f, g, h, i, j, l);
  }

 protected:
  Backend& inner_;
};

}  // namespace bm::engine::testing
