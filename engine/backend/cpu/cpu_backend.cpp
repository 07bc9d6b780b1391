#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/candidate_shapes.h"
#include "engine/backend/cpu/candidates.h"
#include "engine/backend/cpu/cpu_communicator.h"
#include "engine/backend/tensor_bytes.h"

#include <sys/mman.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <new>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/thread_pool.h"

namespace bm::engine {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Aligned for the widest vector loads; host memory owned by the buffer.
class CpuBuffer final : public Buffer {
 public:
  CpuBuffer(std::byte* data, int64_t size, std::align_val_t alignment)
      : data_(data), size_(size), alignment_(alignment) {}
  ~CpuBuffer() override { ::operator delete[](data_, alignment_); }
  int64_t size_bytes() const override { return size_; }
  std::byte* data() const { return data_; }

 private:
  std::byte* data_;
  int64_t size_;
  std::align_val_t alignment_;
};

std::byte* bytes_of(const Tensor& tensor) {
  return tensor_bytes<CpuBuffer>(tensor);
}
float* f32(const Tensor& tensor) {
  return tensor_data<float, CpuBuffer>(tensor, DType::kF32);
}
const int32_t* i32(const Tensor& tensor) {
  return tensor_data<const int32_t, CpuBuffer>(tensor, DType::kI32);
}
int32_t* i32w(const Tensor& tensor) {
  return tensor_data<int32_t, CpuBuffer>(tensor, DType::kI32);
}
const uint32_t* u32(const Tensor& tensor) {
  return tensor_data<const uint32_t, CpuBuffer>(tensor, DType::kU32);
}

cpu::ConstData weight_data(const Tensor& tensor) {
  BM_CHECK(tensor.dtype == DType::kBF16 || tensor.dtype == DType::kF16 || tensor.dtype == DType::kF32);
  return cpu::ConstData{bytes_of(tensor), tensor.dtype};
}

cpu::KvCacheView kv_view(const KvCacheLayer& cache) {
  BM_CHECK(cache.k.dtype == cache.v.dtype && cache.k.rows == cache.v.rows && cache.k.cols == cache.v.cols);
  BM_CHECK(cache.k.dtype == DType::kBF16 || cache.k.dtype == DType::kF32);
  BM_CHECK(cache.k.rows % kKvBlockSize == 0);
  return cpu::KvCacheView{bytes_of(cache.k), bytes_of(cache.v), cache.k.dtype, cache.k.rows, cache.k.cols};
}

void check_quantized(const QuantizedShape& shape) {
  BM_CHECK(shape.bits == 4 || shape.bits == 8);
  BM_CHECK(shape.rows > 0 && shape.cols > 0 && shape.group_size > 0);
  BM_CHECK(shape.group_size % shape.values_per_word() == 0 && shape.cols % shape.group_size == 0);
  BM_CHECK(shape.inputs() > 0 && shape.inputs() <= shape.cols && (shape.permuted || shape.inputs() == shape.cols));
}

bool same_shape(const Tensor& a, const Tensor& b) {
  return a.rows == b.rows && a.cols == b.cols;
}

// MemTotal and MemAvailable from /proc/meminfo (what the kernel could hand out without swapping).
MemoryInfo host_memory_info() {
  MemoryInfo info;
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") info.total_bytes = kib * 1024;
    if (key == "MemAvailable:") info.free_bytes = kib * 1024;
  }
  return info;
}

struct RecordedStep final : StepGraph {
  std::vector<std::function<void()>> ops;
  int64_t num_nodes() const override { return static_cast<int64_t>(ops.size()); }
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options)
      : pool_(options.num_threads, options.pin_cpus),
        gemm_path_(options.gemm_path == cpu::GemmPath::kAuto ? cpu::best_gemm_path() : options.gemm_path) {
    BM_CHECK(cpu::cpu_has_gemm_path(gemm_path_));
  }

  std::string_view name() const override { return "cpu"; }
  MemoryInfo memory_info() const override { return host_memory_info(); }

  absl::StatusOr<std::unique_ptr<Buffer>> allocate(int64_t num_bytes) override {
    BM_CHECK(num_bytes >= 0);
    BM_CHECK(recording_ == nullptr);  // no allocation while a step is being recorded (as under CUDA capture)
    // Round up so that a vector load at the end of the last row stays inside the allocation.
    const size_t rounded = static_cast<size_t>((num_bytes + 63) / 64 * 64 + 64);
    // Weights and the KV cache are streamed every token: on 2 MiB pages (transparent huge pages, which many
    // kernels only grant on request) that stream misses the TLB 512 times less often.
    const bool huge = rounded >= kHugePage * 2;
    const std::align_val_t alignment{huge ? kHugePage : 64};
    auto* data = static_cast<std::byte*>(::operator new[](rounded, alignment, std::nothrow));
    if (data == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat("the CPU backend cannot allocate ", num_bytes, " bytes"));
    }
    if (huge) ::madvise(data, rounded / kHugePage * kHugePage, MADV_HUGEPAGE);  // a hint: failure changes nothing
    packed_.erase(packed_.lower_bound(data), packed_.lower_bound(data + rounded));
    return std::make_unique<CpuBuffer>(data, num_bytes, alignment);
  }

  void copy_to_device(std::span<const std::byte> src, const Tensor& dst) override {
    BM_CHECK(static_cast<int64_t>(src.size()) == dst.num_bytes());
    BM_CHECK(recording_ == nullptr);
    if (!src.empty()) std::memcpy(bytes_of(dst), src.data(), src.size());
    packed_.erase(bytes_of(dst));
  }

  // BF16 and F16 weights are packed for the GEMM here, once; the set remembers which tensors hold packed bytes. A
  // tied head's embedding table comes this way too: embedding() then gathers its rows from the packed layout.
  void copy_linear_weight_to_device(std::span<const std::byte> src, const Tensor& dst) override {
    if (!cpu::packable_linear_weight(dst.dtype, dst.rows, dst.cols)) {
      copy_to_device(src, dst);
      return;
    }
    BM_CHECK(static_cast<int64_t>(src.size()) == dst.num_bytes());
    BM_CHECK(recording_ == nullptr);
    cpu::pack_linear_weight(dst.dtype, reinterpret_cast<const uint16_t*>(src.data()), dst.rows, dst.cols,
                            reinterpret_cast<uint16_t*>(bytes_of(dst)));
    packed_.insert(bytes_of(dst));
  }

  void copy_to_host(const Tensor& src, std::span<std::byte> dst) override {
    BM_CHECK(static_cast<int64_t>(dst.size()) == src.num_bytes());
    BM_CHECK(recording_ == nullptr);
    if (!dst.empty()) std::memcpy(dst.data(), bytes_of(src), dst.size());
  }

  void synchronize() override { BM_CHECK(recording_ == nullptr); }  // every op has finished when it returns

  // Recording keeps each op as a closure over its arguments (tensor views, not their contents), so a replay
  // reads whatever the buffers hold then — the contract a CUDA graph imposes, checked here without a GPU.
  bool records_steps() const override { return true; }
  absl::Status begin_capture() override {
    if (recording_ != nullptr) return absl::FailedPreconditionError("a step is already being recorded");
    recording_ = std::make_unique<RecordedStep>();
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<StepGraph>> end_capture() override {
    if (recording_ == nullptr) return absl::FailedPreconditionError("end_capture without begin_capture");
    return std::unique_ptr<StepGraph>(std::move(recording_));
  }

  void replay(const StepGraph& graph) override {
    BM_CHECK(recording_ == nullptr);
    const auto* step = dynamic_cast<const RecordedStep*>(&graph);
    BM_CHECK(step != nullptr);
    for (const std::function<void()>& op : step->ops) op();
  }

  void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    BM_CHECK(ids.rows == 1 && out.rows == ids.cols && out.cols == table.cols);
    if (packed_.contains(bytes_of(table))) {
      const auto* packed = reinterpret_cast<const uint16_t*>(bytes_of(table));
      run([=, this] {
        cpu::packed_embedding(pool_, table.dtype, packed, table.rows, table.cols, i32(ids), ids.cols, f32(out));
      });
      return;
    }
    run([=, this] { cpu::embedding(pool_, weight_data(table), table.rows, table.cols, i32(ids), ids.cols, f32(out)); });
  }

  void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override {
    BM_CHECK(same_shape(x, out) && weight.num_elements() == x.cols);
    run([=, this] { cpu::rms_norm(pool_, f32(x), x.rows, x.cols, weight_data(weight), eps, f32(out)); });
  }

  void add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                    const Tensor& out) override {
    BM_CHECK(same_shape(x, residual) && same_shape(x, out) && weight.num_elements() == x.cols);
    BM_CHECK(bytes_of(out) != bytes_of(x));
    run([=, this] {
      cpu::add_rms_norm(pool_, f32(x), f32(residual), x.rows, x.cols, weight_data(weight), eps, f32(out));
    });
  }

  void linear(const Tensor& x, const Tensor& weight, const Tensor* bias, const Tensor& out) override {
    BM_CHECK(x.cols == weight.cols && out.rows == x.rows && out.cols == weight.rows);
    BM_CHECK(bias == nullptr || bias->num_elements() == weight.rows);
    const cpu::ConstData bias_data = bias != nullptr ? weight_data(*bias) : cpu::ConstData{};
    if (packed_.contains(bytes_of(weight))) {
      const auto* packed = reinterpret_cast<const uint16_t*>(bytes_of(weight));
      run([=, this] {
        cpu::packed_linear(pool_, gemm_path_, f32(x), x.rows, x.cols, weight.dtype, packed, weight.rows, bias_data,
                           f32(out));
      });
      return;
    }
    run([=, this] {
      cpu::linear(pool_, f32(x), x.rows, x.cols, weight_data(weight), weight.rows, bias_data, f32(out));
    });
  }

  absl::StatusOr<int64_t> quantized_matrix_bytes(const QuantizedShape& shape) const override {
    return cpu::quantized_layout_bytes(shape);
  }

  void copy_quantized_to_device(const QuantizedMatrixSource& src, const QuantizedMatrix& dst) override {
    BM_CHECK(recording_ == nullptr);
    BM_CHECK(src.shape == dst.shape && dst.data.dtype == DType::kU8);
    BM_CHECK(dst.data.num_bytes() == cpu::quantized_layout_bytes(dst.shape));
    check_quantized(dst.shape);
    const QuantizedShape& shape = src.shape;
    BM_CHECK(static_cast<int64_t>(src.qweight.size()) == shape.cols / shape.values_per_word() * shape.rows);
    BM_CHECK(static_cast<int64_t>(src.scales.size()) == shape.num_groups() * shape.rows);
    BM_CHECK(static_cast<int64_t>(src.zeros.size()) == shape.num_groups() * shape.rows);
    BM_CHECK(static_cast<int64_t>(src.perm.size()) == (shape.permuted ? shape.cols : 0));
    cpu::pack_quantized(src, bytes_of(dst.data));
  }

  void quantized_linear(const Tensor& x, const QuantizedMatrix& weight, const Tensor* bias,
                        const Tensor& out) override {
    check_quantized(weight.shape);
    BM_CHECK(weight.data.dtype == DType::kU8 && weight.data.num_bytes() == cpu::quantized_layout_bytes(weight.shape));
    BM_CHECK(x.cols == weight.shape.inputs() && out.rows == x.rows && out.cols == weight.shape.rows);
    BM_CHECK(bias == nullptr || bias->num_elements() == weight.shape.rows);
    BM_CHECK(bytes_of(out) != bytes_of(x));
    const cpu::ConstData bias_data = bias != nullptr ? weight_data(*bias) : cpu::ConstData{};
    const QuantizedShape shape = weight.shape;
    const Tensor data = weight.data;
    run([=, this] {
      cpu::quantized_linear(pool_, gemm_path_, f32(x), x.rows, bytes_of(data), shape, bias_data, f32(out));
    });
  }

  void rope(const Tensor& x, const Tensor& positions, const Tensor& inv_freq, int32_t head_dim) override {
    BM_CHECK(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0);
    BM_CHECK(positions.num_elements() == x.rows && inv_freq.num_elements() == head_dim / 2);
    run([=, this] { cpu::rope(pool_, f32(x), x.rows, x.cols / head_dim, head_dim, i32(positions), f32(inv_freq)); });
  }

  void store_kv(const Tensor& k, const Tensor& v, const Tensor& slot_mapping, const KvCacheLayer& cache) override {
    const cpu::KvCacheView view = kv_view(cache);
    BM_CHECK(same_shape(k, v) && k.cols == view.row_size && slot_mapping.num_elements() == k.rows);
    run([=, this] { cpu::store_kv(pool_, f32(k), f32(v), k.rows, i32(slot_mapping), view); });
  }

  void rope_store_kv(const Tensor& qkv, const RotaryAngles& angles, const AttentionShape& shape,
                     const Tensor& slot_mapping, const KvCacheLayer& cache, const Tensor& q_out) override {
    check_rope_store_kv_shapes(qkv, angles, shape, slot_mapping, cache, q_out);
    const cpu::KvCacheView view = kv_view(cache);
    const int64_t hd = shape.head_dim;
    cpu::RotaryView rotary;
    if (angles.from_table()) {
      rotary.cos = f32(angles.cos);
      rotary.sin = f32(angles.sin);
    } else {
      rotary.positions = i32(angles.positions);
      rotary.inv_freq = f32(angles.inv_freq);
    }
    run([=, this] {
      cpu::rope_store_kv(pool_, f32(qkv), qkv.rows, shape.num_heads, hd, rotary, i32(slot_mapping), view, f32(q_out));
    });
  }

  void paged_attention(const Tensor& q, const KvCacheLayer& cache, const AttentionMetadata& metadata,
                       const AttentionShape& shape, const Tensor& out) override {
    const cpu::KvCacheView view = kv_view(cache);
    BM_CHECK(same_shape(q, out) && q.cols == int64_t{shape.num_heads} * shape.head_dim);
    BM_CHECK(view.row_size == int64_t{shape.num_kv_heads} * shape.head_dim);
    BM_CHECK(metadata.query_starts.num_elements() == metadata.num_seqs + 1);
    BM_CHECK(metadata.seq_lens.num_elements() == metadata.num_seqs);
    BM_CHECK(metadata.block_tables.rows == metadata.num_seqs);
    const cpu::AttentionBatchView batch{metadata.num_seqs, i32(metadata.query_starts), i32(metadata.seq_lens),
                                        i32(metadata.block_tables), metadata.block_tables.cols};
    run([=, this] {
      cpu::paged_attention(pool_, f32(q), q.rows, view, batch, shape.num_heads, shape.num_kv_heads, shape.head_dim,
                           shape.scale, f32(out));
    });
  }

  void silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    BM_CHECK(same_shape(gate, up) && same_shape(gate, out));
    run([=, this] { cpu::silu_mul(pool_, f32(gate), f32(up), gate.num_elements(), f32(out)); });
  }

  void silu_mul_fused(const Tensor& gate_up, const Tensor& out) override {
    BM_CHECK(gate_up.rows == out.rows && gate_up.cols == 2 * out.cols && bytes_of(gate_up) != bytes_of(out));
    run([=, this] { cpu::silu_mul_fused(pool_, f32(gate_up), out.rows, out.cols, f32(out)); });
  }

  void add(const Tensor& a, const Tensor& b, const Tensor& out) override {
    BM_CHECK(same_shape(a, b) && same_shape(a, out));
    run([=, this] { cpu::add(pool_, f32(a), f32(b), a.num_elements(), f32(out)); });
  }

  void gather_rows(const Tensor& x, const Tensor& row_ids, const Tensor& out) override {
    BM_CHECK(row_ids.rows == 1 && out.rows == row_ids.cols && out.cols == x.cols);
    run([=, this] {
      const int32_t* ids = i32(row_ids);
      for (int64_t r = 0; r < row_ids.cols; ++r) BM_CHECK(ids[r] >= 0 && ids[r] < x.rows);
      cpu::gather_rows(pool_, f32(x), x.cols, ids, row_ids.cols, f32(out));
    });
  }

  bool runs_collectives(const Communicator& comm) const override { return comm.kind() == "cpu"; }
  void all_reduce_sum(const Tensor& x, Communicator& comm) override {
    BM_CHECK(x.dtype == DType::kF32 && comm.kind() == "cpu");
    auto& cpu_comm = static_cast<cpu::CpuCommunicator&>(comm);
    run([=, this, &cpu_comm] {
      // An aborted group (a peer failed outside a collective): this rank's step is void, and so is every later
      // one — the fault is sticky, as a device fault is, so the engine stops instead of computing on garbage.
      if (!cpu_comm.all_reduce_sum(f32(x), x.num_elements()) && collective_fault_.ok())
        collective_fault_ =
            absl::InternalError(absl::StrCat("the tensor-parallel group was aborted: ", cpu_comm.abort_reason()));
    });
  }
  absl::Status device_status() const override { return collective_fault_; }

  bool runs_encoder_ops() const override { return true; }

  void rope_table(const Tensor& x, const Tensor& cos, const Tensor& sin, int32_t head_dim) override {
    BM_CHECK(head_dim > 0 && head_dim % 2 == 0 && x.cols % head_dim == 0);
    BM_CHECK(cos.rows == x.rows && cos.cols == head_dim / 2 && same_shape(cos, sin));
    run([=, this] { cpu::rope_table(pool_, f32(x), x.rows, x.cols / head_dim, head_dim, f32(cos), f32(sin)); });
  }

  void segment_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_starts,
                         const AttentionShape& shape, const Tensor& out) override {
    BM_CHECK(shape.num_heads > 0 && shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0);
    BM_CHECK(same_shape(q, out) && q.cols == int64_t{shape.num_heads} * shape.head_dim);
    BM_CHECK(same_shape(k, v) && k.rows == q.rows && k.cols == int64_t{shape.num_kv_heads} * shape.head_dim);
    BM_CHECK(segment_starts.rows == 1 && segment_starts.cols >= 1);
    BM_CHECK(bytes_of(out) != bytes_of(q) && bytes_of(out) != bytes_of(k) && bytes_of(out) != bytes_of(v));
    const int32_t num_segments = static_cast<int32_t>(segment_starts.cols - 1);
    const int64_t n = q.rows;
    run([=, this] {  // the offsets are read when the op runs: a recorded step reads them at replay
      const int32_t* starts = i32(segment_starts);
      BM_CHECK(starts[0] == 0 && starts[num_segments] == n);
      for (int32_t s = 0; s < num_segments; ++s) BM_CHECK(starts[s] <= starts[s + 1]);
      cpu::segment_attention(pool_, f32(q), f32(k), f32(v), n, starts, num_segments, shape.num_heads,
                             shape.num_kv_heads, shape.head_dim, shape.scale, f32(out));
    });
  }

  void gelu(const Tensor& x, const Tensor& out) override {
    BM_CHECK(same_shape(x, out));
    run([=, this] { cpu::gelu(pool_, f32(x), x.num_elements(), f32(out)); });
  }

  void top_candidates(const Tensor& logits, const Tensor& listed_starts, const Tensor& listed_ids, int32_t k,
                      const Tensor& listed_logits, const Tensor& cand_ids, const Tensor& cand_logits,
                      const Tensor& log_sum_exp, const Tensor& inverse_temperatures, const Tensor& tempered_lse,
                      const Tensor& mask_rows, const Tensor& masks) override {
    const CandidateShapes shapes =
        check_candidate_shapes(logits, listed_starts, listed_ids, k, listed_logits, cand_ids, cand_logits, log_sum_exp,
                               inverse_temperatures, tempered_lse, mask_rows, masks);
    const int64_t rows = shapes.rows, vocab = shapes.vocab, num_listed = shapes.num_listed;
    const int64_t num_masks = shapes.num_masks;
    const bool wants_lse = shapes.wants_lse, wants_mass = shapes.wants_mass;
    run([=, this] {  // the offsets and ids are checked when the op runs: a recorded step reads them at replay
      const int32_t* starts = i32(listed_starts);
      BM_CHECK(starts[0] == 0 && starts[rows] == num_listed);
      const int32_t* ids = num_listed > 0 ? i32(listed_ids) : nullptr;
      for (int64_t r = 0; r < rows; ++r) BM_CHECK(starts[r] <= starts[r + 1]);
      for (int64_t j = 0; j < num_listed; ++j) BM_CHECK(ids[j] >= 0 && ids[j] < vocab);
      const int32_t* which_mask = num_masks > 0 ? i32(mask_rows) : nullptr;
      for (int64_t r = 0; which_mask != nullptr && r < rows; ++r)
        BM_CHECK(which_mask[r] >= -1 && which_mask[r] < num_masks);
      cpu::top_candidates(pool_, f32(logits), rows, vocab, starts, ids, k,
                          num_listed > 0 ? f32(listed_logits) : nullptr, i32w(cand_ids), f32(cand_logits),
                          wants_lse ? f32(log_sum_exp) : nullptr, wants_mass ? f32(inverse_temperatures) : nullptr,
                          wants_mass ? f32(tempered_lse) : nullptr, which_mask, num_masks > 0 ? u32(masks) : nullptr);
    });
  }

 private:
  // Runs an op now, or records it while a step is being captured.
  template <typename Op>
  void run(Op&& op) {
    if (recording_ != nullptr)
      recording_->ops.emplace_back(std::forward<Op>(op));
    else
      op();
  }

  cpu::ThreadPool pool_;
  cpu::GemmPath gemm_path_;
  // Start of each packed linear weight. A new allocation or a plain copy over such bytes drops their entries, so
  // memory reused after a weight buffer is freed is not mistaken for packed.
  std::set<const std::byte*> packed_;
  std::unique_ptr<RecordedStep> recording_;
  absl::Status collective_fault_;  // the first collective of an aborted group (all_reduce_sum), else OK
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace bm::engine
