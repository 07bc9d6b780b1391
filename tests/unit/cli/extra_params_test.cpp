#include "cli/extra_params.h"

#include <gtest/gtest.h>

#include "bmserver/v1/serving.pb.h"
#include "cli/serve_flags.h"

namespace bm::cli {
namespace {

using bmserver::v1::ServeOptions;

TEST(SplitShellWords, QuotesAndEscapes) {
  auto words = split_shell_words("  --a 1 --b='x y' \"c d\" e\\ f ");
  ASSERT_TRUE(words.ok());
  EXPECT_EQ(*words, (std::vector<std::string>{"--a", "1", "--b=x y", "c d", "e f"}));
  EXPECT_EQ(split_shell_words("--a 'x").status().message(), "--extra-params has an unclosed ' quote");
}

TEST(ExtraParams, MapsEveryArgumentThatMeansSomethingHere) {
  ServeOptions o;
  ASSERT_TRUE(apply_extra_params("--max-model-len 8192 --gpu-memory-utilization=0.8 --max-num-seqs 64 "
                                 "--max_num_batched_tokens 1024 --seed 7 --enforce-eager --no-enable-prefix-caching "
                                 "--tensor-parallel-size 1 -tp 1 --kv-cache-dtype auto --dtype bfloat16 "
                                 "--api-key k --enable-chunked-prefill --disable-log-requests --block-size 16",
                                 o)
                  .ok());
  EXPECT_EQ(o.max_model_len(), 8192);
  EXPECT_DOUBLE_EQ(o.gpu_memory_utilization(), 0.8);
  EXPECT_EQ(o.max_num_seqs(), 64);
  EXPECT_EQ(o.max_num_batched_tokens(), 1024);
  EXPECT_EQ(o.seed(), 7u);
  EXPECT_TRUE(o.enforce_eager());
  EXPECT_TRUE(o.disable_prefix_caching());
  EXPECT_EQ(o.api_key(), "k");
  EXPECT_EQ(o.kv_cache_dtype(), "auto");
  EXPECT_EQ(o.tensor_parallel_size(), 1);
  ASSERT_TRUE(apply_extra_params("-tp 2", o).ok());
  EXPECT_EQ(o.tensor_parallel_size(), 2);
  ASSERT_TRUE(apply_extra_params("--kv-cache-dtype float32", o).ok());
  EXPECT_EQ(o.kv_cache_dtype(), "float32");
  ASSERT_TRUE(apply_extra_params("--enable-prefix-caching", o).ok());
  EXPECT_FALSE(o.disable_prefix_caching());
  // vLLM's media flags, shell-quoted JSON as the original's command lines carry them (the daemon checks values).
  ASSERT_TRUE(apply_extra_params("--limit-mm-per-prompt '{\"image\": 2}' --mm_processor_kwargs='{\"fps\": 1}' "
                                 "--allowed-local-media-path /srv/media --allowed-media-domains a.com,b.org",
                                 o)
                  .ok());
  EXPECT_EQ(o.limit_mm_per_prompt(), "{\"image\": 2}");
  EXPECT_EQ(o.mm_processor_kwargs(), "{\"fps\": 1}");
  EXPECT_EQ(o.allowed_local_media_path(), "/srv/media");
  EXPECT_EQ(o.allowed_media_domains(), "a.com,b.org");
}

TEST(ExtraParams, RefusesEachUnknownOrMalformedArgumentByNameAndChangesNothing) {
  ServeOptions o;
  o.set_max_model_len(100);
  absl::Status s = apply_extra_params(
      "--max-model-len 4096 --trust-remote-code --swap-space 4 --max-num-seqs many --tensor-parallel-size 0 "
      "--kv-cache-dtype fp8 stray --seed",
      o);
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  std::string m(s.message());
  EXPECT_NE(m.find("--trust-remote-code has no meaning here"), std::string::npos) << m;
  EXPECT_NE(m.find("--swap-space has no meaning here"), std::string::npos) << m;
  EXPECT_NE(m.find("--max-num-seqs needs a whole number"), std::string::npos) << m;
  EXPECT_NE(m.find("--tensor-parallel-size needs a whole number from 1 to 64"), std::string::npos) << m;
  EXPECT_NE(m.find("--kv-cache-dtype 'fp8' is not available"), std::string::npos) << m;
  EXPECT_NE(m.find("'stray' is not an argument"), std::string::npos) << m;
  EXPECT_NE(m.find("--seed needs a value"), std::string::npos) << m;
  EXPECT_EQ(o.max_model_len(), 100);  // nothing half-applied
  EXPECT_EQ(std::string(apply_extra_params("--enforce-eager=1", o).message()).substr(0, 46),
            "--extra-params: --enforce-eager takes no value");
}

TEST(ServeFlags, ExtraParamsComeLastAndWinAndAreRecorded) {
  ServeFlags flags;
  flags.max_model_len = 2048;
  flags.extra_params = "--max-model-len 4096";
  ServeOptions o;
  ASSERT_TRUE(fill_serve_options(flags, o).ok());
  EXPECT_EQ(o.max_model_len(), 4096);
  EXPECT_EQ(o.seed(), 2025u);  // the original's default
  EXPECT_EQ(o.extra_params(), "--max-model-len 4096");
  flags.extra_params = "--bogus";
  ServeOptions untouched;
  EXPECT_FALSE(fill_serve_options(flags, untouched).ok());
  EXPECT_EQ(untouched.seed(), 0u);
}

}  // namespace
}  // namespace bm::cli
