// The multimodal forward of a Qwen2.5-VL checkpoint against transformers (tests/data/models/qwen2_5_vl-text,
// media cases from tests/tools/vl_make_media_fixtures.py): the vision tower's embeddings spliced in place of the
// pad tokens and the M-RoPE positions in attention give transformers' prefill and per-step logits, whole and in
// prefill chunks that cut through an image; prompts whose pad runs do not match their media are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <vector>

#include "engine/models/causal_lm.h"
#include "engine/models/model_loader.h"
#include "tests/unit/engine/models/forward_chunk.h"
#include "tests/unit/engine/models/media_fixture.h"

namespace bm::engine {
namespace {

using media_fixture::MediaCase;

// Both sides compute in float32 from the same bf16 weights; the vision tower adds its own summation-order noise.
constexpr double kLogitTolerance = 1e-3;

double max_abs_diff(std::span<const float> got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    diff = std::max(diff, std::abs(double{got[i]} - double{want[i]}));
  return diff;
}

std::unique_ptr<CausalLM> load_model() {
  LoadOptions options;
  options.backend = "cpu";
  options.num_threads = 2;
  options.kv_cache_dtype = DType::kF32;
  options.cpu_gemm_path = "f32";  // compared with float32 transformers at kLogitTolerance
  auto model = load_causal_lm(media_fixture::model_dir(), options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return nullptr;
  EXPECT_TRUE((*model)->allocate_kv_cache(64).ok());
  return *std::move(model);
}

// The prepared media of a case with every item encoded.
std::shared_ptr<SequenceMedia> prepare(CausalLM& model, const MediaCase& c) {
  auto media = model.prepare_media(c.ids, &c.media);
  EXPECT_TRUE(media.ok()) << media.status();
  if (!media.ok() || *media == nullptr) return nullptr;
  for (size_t i = 0; i < c.media.items.size(); ++i) {
    auto embeddings = model.encode_media(std::vector<const MediaItem*>{&c.media.items[i]});
    EXPECT_TRUE(embeddings.ok()) << embeddings.status();
    if (!embeddings.ok()) return nullptr;
    (*media)->items[i].embeddings = std::make_shared<const std::vector<float>>(std::move((*embeddings)[0]));
  }
  return *media;
}

using testing::forward_chunk;

TEST(DecoderMediaTest, MatchesTransformersOnImagesAndVideos) {
  std::unique_ptr<CausalLM> model = load_model();
  ASSERT_NE(model, nullptr);
  ASSERT_TRUE(model->media_support().ok()) << model->media_support();
  for (const MediaCase& c : media_fixture::read_cases()) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<SequenceMedia> media = prepare(*model, c);
    ASSERT_NE(media, nullptr);
    EXPECT_EQ(media->delta, c.rope_delta);
    const int32_t n = static_cast<int32_t>(c.ids.size());
    std::vector<float> logits;
    ASSERT_TRUE(model->forward(ForwardBatch{c.ids, {forward_chunk(0, n, media.get())}}, logits).ok());
    double worst = max_abs_diff(logits, c.prefill_logits);
    // Greedy steps past the prompt: position index + delta on all three rows.
    int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    for (size_t step = 0; step < c.greedy_ids.size(); ++step) {
      ASSERT_EQ(token, c.greedy_ids[step]) << "step " << step;
      ASSERT_TRUE(
          model->forward(ForwardBatch{{token}, {forward_chunk(n + static_cast<int32_t>(step), 1, media.get())}}, logits)
              .ok());
      worst = std::max(worst, max_abs_diff(logits, c.step_logits[step]));
      token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    EXPECT_LT(worst, kLogitTolerance);
    std::printf("[ figures ] %s: %zu prompt tokens, max |dlogit| %.3g over prefill and %zu steps\n", c.name.c_str(),
                c.ids.size(), worst, c.greedy_ids.size());
  }
}

TEST(DecoderMediaTest, PrefillChunksThatCutThroughAnImageGiveTheSameLogits) {
  std::unique_ptr<CausalLM> model = load_model();
  ASSERT_NE(model, nullptr);
  for (const MediaCase& c : media_fixture::read_cases()) {
    SCOPED_TRACE(c.name);
    std::shared_ptr<SequenceMedia> media = prepare(*model, c);
    ASSERT_NE(media, nullptr);
    const int32_t n = static_cast<int32_t>(c.ids.size());
    std::vector<float> logits;
    for (int32_t at = 0; at < n; at += 7) {
      const int32_t size = std::min(7, n - at);
      std::vector<int32_t> ids(c.ids.begin() + at, c.ids.begin() + at + size);
      ASSERT_TRUE(model->forward(ForwardBatch{ids, {forward_chunk(at, size, media.get())}}, logits).ok());
    }
    EXPECT_LT(max_abs_diff(logits, c.prefill_logits), kLogitTolerance);
  }
}

TEST(DecoderMediaTest, TextAndMediaSequencesShareAStep) {
  std::unique_ptr<CausalLM> model = load_model();
  ASSERT_NE(model, nullptr);
  const std::vector<MediaCase> cases = media_fixture::read_cases();
  const MediaCase& c = cases[0];
  std::shared_ptr<SequenceMedia> media = prepare(*model, c);
  ASSERT_NE(media, nullptr);
  std::vector<float> alone, batched;
  const std::vector<int32_t> text = {5, 6, 7, 8, 9};
  ASSERT_TRUE(model->forward(ForwardBatch{text, {forward_chunk(0, 5, nullptr)}}, alone).ok());
  // The text sequence's blocks follow the media sequence's, in the same cache.
  const int32_t n = static_cast<int32_t>(c.ids.size());
  SequenceChunk second = forward_chunk(0, 5, nullptr);
  for (int32_t& b : second.block_table) b += 8;
  std::vector<int32_t> ids = c.ids;
  ids.insert(ids.end(), text.begin(), text.end());
  ASSERT_TRUE(model->forward(ForwardBatch{ids, {forward_chunk(0, n, media.get()), second}}, batched).ok());
  const size_t vocab = c.prefill_logits.size();
  EXPECT_LT(max_abs_diff(std::span(batched).first(vocab), c.prefill_logits), kLogitTolerance);
  EXPECT_LT(max_abs_diff(std::span(batched).subspan(vocab), alone), 1e-5);
}

// The engine encodes the items of the requests it admits together in one pass: the same embeddings as one by one.
TEST(DecoderMediaTest, ItemsEncodedTogetherGiveWhatEachGivesAlone) {
  std::unique_ptr<CausalLM> model = load_model();
  ASSERT_NE(model, nullptr);
  std::vector<const MediaItem*> all;
  const std::vector<MediaCase> cases = media_fixture::read_cases();
  for (const MediaCase& c : cases)
    for (const MediaItem& item : c.media.items) all.push_back(&item);
  auto together = model->encode_media(all);
  ASSERT_TRUE(together.ok()) << together.status();
  ASSERT_EQ(together->size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    auto alone = model->encode_media(std::vector<const MediaItem*>{all[i]});
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_LT(max_abs_diff((*together)[i], (*alone)[0]), 1e-5) << "item " << i;
  }
}

TEST(DecoderMediaTest, RefusesPadRunsThatDoNotMatchTheMedia) {
  std::unique_ptr<CausalLM> model = load_model();
  ASSERT_NE(model, nullptr);
  const std::vector<MediaCase> cases = media_fixture::read_cases();
  const MediaCase& c = cases[0];  // one image of 6 tokens
  // One pad token too few.
  std::vector<int32_t> short_run = c.ids;
  short_run.erase(std::find(short_run.begin(), short_run.end(), 510));
  auto refused = model->prepare_media(short_run, &c.media);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  // Pad tokens without media, and media without pad tokens.
  refused = model->prepare_media(c.ids, nullptr);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  const std::vector<int32_t> text = {5, 6, 7};
  refused = model->prepare_media(text, &c.media);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  // An image where the prompt holds video pads.
  std::vector<int32_t> as_video = c.ids;
  std::replace(as_video.begin(), as_video.end(), 510, 511);
  refused = model->prepare_media(as_video, &c.media);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  // Pixels that do not fill the grid.
  PromptMedia cut = c.media;
  cut.items[0].pixel_values.pop_back();
  refused = model->prepare_media(c.ids, &cut);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  // An image whose tower activations would pass 2 GiB (checked before its pixels: none are needed to refuse it).
  PromptMedia huge;
  huge.items.push_back(MediaItem{MediaKind::kImage, VisionGrid{1, 578, 578}, {}, 1.0f, 7});
  std::vector<int32_t> huge_ids = {5, 508};
  huge_ids.insert(huge_ids.end(), static_cast<size_t>(huge.items[0].num_tokens()), 510);
  huge_ids.push_back(509);
  refused = model->prepare_media(huge_ids, &huge);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_NE(std::string(refused.status().message()).find("MiB of activations"), std::string::npos) << refused.status();
  // Text without pads needs nothing.
  auto none = model->prepare_media(text, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
}

}  // namespace
}  // namespace bm::engine
