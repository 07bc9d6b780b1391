#include "daemon/control/serve_settings.h"

#include <gtest/gtest.h>

namespace bm::daemon::control {
namespace {

TEST(ServeSettingsFromProto, ZeroFieldsTakeTheDefaultsAndEveryFieldArrives) {
  bmserver::v1::StoreSelector store;
  store.set_hub("ms");
  bmserver::v1::ServeOptions o;
  auto s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->hub, "ms");
  EXPECT_EQ(s->backend, "auto");
  EXPECT_DOUBLE_EQ(s->gpu_memory_utilization, 0.9);
  EXPECT_EQ(s->max_num_seqs, 256);
  EXPECT_TRUE(s->enable_prefix_caching);

  o.set_backend("cpu");
  o.set_max_num_seqs(8);
  o.set_gpu_memory_utilization(0.5);
  o.set_seed(7);
  o.set_disable_prefix_caching(true);
  o.set_extra_params("--no-enable-prefix-caching");
  s = serve_settings_from_proto(store, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->backend, "cpu");
  EXPECT_EQ(s->max_num_seqs, 8);
  EXPECT_DOUBLE_EQ(s->gpu_memory_utilization, 0.5);
  EXPECT_EQ(s->seed, 7u);
  EXPECT_FALSE(s->enable_prefix_caching);
  EXPECT_EQ(s->extra_params, "--no-enable-prefix-caching");
}

TEST(ServeSettingsFromProto, OutOfRangeValuesAreRefusedWithASentence) {
  bmserver::v1::StoreSelector store;
  bmserver::v1::ServeOptions o;
  o.set_backend("tpu");
  EXPECT_EQ(serve_settings_from_proto(store, o).status().message(), "backend must be auto, cuda or cpu, not 'tpu'");
  o.set_backend("cpu");
  o.set_gpu_memory_utilization(1.5);
  EXPECT_EQ(serve_settings_from_proto(store, o).status().code(), absl::StatusCode::kInvalidArgument);
  o.set_gpu_memory_utilization(0);
  o.set_max_num_seqs(-1);
  EXPECT_EQ(serve_settings_from_proto(store, o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace bm::daemon::control
