// The daemon's side of images and videos in chat requests (daemon/openai/media_input.h, media_source.h,
// daemon/serving/media_options.h): part shapes, the local-file and domain policy, loading and preprocessing
// through bm_vision, pad-token expansion, and the content parts the chat template sees.
#include "daemon/openai/media_input.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "daemon/openai/media_source.h"
#include "daemon/openai/request_preparation.h"
#include "daemon/serving/media_options.h"
#include "daemon/serving/served_model.h"
#include "engine/template/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/vision/processor_config.h"
#include "tests/unit/engine/model/test_files.h"
#include "tests/unit/engine/vision/vision_fixtures.h"

namespace bm::daemon::openai {
namespace {

namespace fs = std::filesystem;
using engine::MediaKind;
using ::testing::HasSubstr;

RequestJson parse(const std::string& text) {
  absl::StatusOr<RequestJson> j = parse_request_json(text);
  EXPECT_TRUE(j.ok()) << j.status();
  return *j;
}

std::string message_of(const std::variant<MediaPart, ApiError>& v) {
  return std::holds_alternative<ApiError>(v) ? std::get<ApiError>(v).message : "";
}

TEST(MediaParts, TheOpenAiShapesAreReadAndOthersRefusedWithTheShape) {
  ASSERT_NE(media_part_kind("image_url"), nullptr);
  EXPECT_EQ(*media_part_kind("image_url"), MediaKind::kImage);
  EXPECT_EQ(*media_part_kind("video_url"), MediaKind::kVideo);
  EXPECT_EQ(media_part_kind("text"), nullptr);
  auto ok = read_media_part(parse(R"({"type":"image_url","image_url":{"url":"data:x","detail":"low"}})"),
                            MediaKind::kImage, "messages[0].content[1]");
  ASSERT_TRUE(std::holds_alternative<MediaPart>(ok));
  EXPECT_EQ(std::get<MediaPart>(ok).url, "data:x");
  EXPECT_EQ(std::get<MediaPart>(ok).param, "messages[0].content[1]");
  auto video =
      read_media_part(parse(R"({"type":"video_url","video_url":{"url":"file:///v.avi"}})"), MediaKind::kVideo, "p");
  ASSERT_TRUE(std::holds_alternative<MediaPart>(video));
  EXPECT_EQ(std::get<MediaPart>(video).kind, MediaKind::kVideo);
  for (const char* bad : {R"({"type":"image_url"})", R"({"type":"image_url","image_url":"data:x"})",
                          R"({"type":"image_url","image_url":{}})", R"({"type":"image_url","image_url":{"url":7}})",
                          R"({"type":"image_url","image_url":{"url":""}})"}) {
    EXPECT_THAT(message_of(read_media_part(parse(bad), MediaKind::kImage, "p")),
                HasSubstr(R"(must be {"type": "image_url", "image_url": {"url": "..."}})"))
        << bad;
  }
  EXPECT_THAT(message_of(read_media_part(parse(R"({"type":"image_url","image_url":{"url":"x","detail":"huge"}})"),
                                         MediaKind::kImage, "p")),
              HasSubstr("auto, low or high"));
  EXPECT_EQ(template_part(MediaKind::kImage).dump(), R"({"type":"image"})");
  EXPECT_EQ(template_part(MediaKind::kVideo).dump(), R"({"type":"video"})");
}

TEST(MediaSource, LocalFilesOnlyInsideTheAllowedFolderSymlinksResolved) {
  engine::testing::TempDir tmp;
  const fs::path allowed = tmp.path() / "media";
  fs::create_directories(allowed / "sub");
  engine::testing::write_file(allowed / "sub" / "a b.png", "x");
  engine::testing::write_file(tmp.path() / "secret.png", "s");
  fs::create_symlink(tmp.path() / "secret.png", allowed / "link.png");
  fs::create_symlink(tmp.path(), allowed / "up");
  const std::string dir = fs::canonical(allowed).string();

  auto inside = allowed_local_file((allowed / "sub" / "a b.png").string(), dir);
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(*inside, fs::canonical(allowed / "sub" / "a b.png"));
  EXPECT_TRUE(allowed_local_file("file://" + dir + "/sub/a%20b.png", dir).ok());
  EXPECT_TRUE(allowed_local_file("file://localhost" + dir + "/sub/a%20b.png", dir).ok());

  for (const std::string& escape :
       {(allowed / ".." / "secret.png").string(), (allowed / "link.png").string(), (allowed / "up/secret.png").string(),
        "file://" + dir + "/../secret.png", "file://" + dir + "/%2e%2e/secret.png", std::string("/etc/passwd"), dir,
        dir + "_sibling/x.png"}) {
    auto refused = allowed_local_file(escape, dir);
    EXPECT_FALSE(refused.ok()) << escape;
    EXPECT_THAT(refused.status().message(), HasSubstr("outside the folder --allowed-local-media-path allows"))
        << escape;
  }
  EXPECT_THAT(allowed_local_file("file://other.host" + dir + "/sub/x.png", dir).status().message(),
              HasSubstr("another host"));
  EXPECT_THAT(allowed_local_file("file:sub/x.png", dir).status().message(), HasSubstr("not an absolute file path"));
  EXPECT_THAT(allowed_local_file((allowed / "sub" / "a b.png").string(), "").status().message(),
              HasSubstr("reads no local files"));

  MediaSourcePolicy policy;
  policy.allowed_local_media_path = dir;
  policy.max_bytes = 1 << 20;
  auto bytes = read_media_bytes((allowed / "sub" / "a b.png").string(), policy);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, "x");
  EXPECT_THAT(read_media_bytes((allowed / "missing.png").string(), policy).status().message(),
              HasSubstr("not a readable file"));
  policy.max_bytes = 0;
  EXPECT_THAT(read_media_bytes((allowed / "sub" / "a b.png").string(), policy).status().message(),
              HasSubstr("over the limit of 0"));
}

TEST(MediaSource, HttpOnlyFromListedHostsAndNoOtherScheme) {
  const std::vector<std::string> domains = {"images.example.com", "127.0.0.1"};
  EXPECT_TRUE(check_media_url_host("https://images.example.com/cat.png", domains).ok());
  EXPECT_TRUE(check_media_url_host("HTTP://Images.Example.COM:8080/cat.png", domains).ok());
  EXPECT_TRUE(check_media_url_host("http://127.0.0.1:9/x", domains).ok());
  EXPECT_THAT(check_media_url_host("https://evil.com/cat.png", domains).message(), HasSubstr("'evil.com' is not"));
  EXPECT_FALSE(check_media_url_host("https://sub.images.example.com/x", domains).ok());  // exact hosts, as vLLM
  EXPECT_FALSE(check_media_url_host("https://images.example.com.evil.com/x", domains).ok());
  EXPECT_FALSE(check_media_url_host("https://images.example.com@evil.com/x", domains).ok());
  EXPECT_THAT(check_media_url_host("https://images.example.com/x", {}).message(), HasSubstr("fetches no http(s)"));
  EXPECT_THAT(check_media_url_host("ftp://images.example.com/x", domains).message(), HasSubstr("not an http(s)"));
  MediaSourcePolicy policy;
  policy.allowed_media_domains = domains;
  policy.max_bytes = 1 << 20;
  for (const char* url : {"ftp://images.example.com/a.png", "gopher://x/", "cat.png", "javascript:alert(1)"})
    EXPECT_THAT(read_media_bytes(url, policy).status().message(), HasSubstr("is not a data:, file:// or http(s)"))
        << url;
  // Refused before any connection: the host is not listed.
  EXPECT_THAT(read_media_bytes("https://evil.com/x.png", policy).status().message(), HasSubstr("is not one"));
  // A listed host that does not answer: refused with a sentence, not a crash (port 9 is discard, closed here).
  EXPECT_THAT(read_media_bytes("http://127.0.0.1:9/x.png", policy).status().message(), HasSubstr("could not be"));
  EXPECT_EQ(*read_media_bytes("data:image/png;base64,aGk=", policy), "hi");
}

serving::MediaOptions default_options() {
  return serving::MediaOptions{};
}

std::string data_url(const std::string& bytes, const char* type = "image/png") {
  return std::string("data:") + type + ";base64," + absl::Base64Escape(bytes);
}

std::string fixture(const char* relative) {
  return engine::vision::testing::read_bytes(engine::vision::testing::fixture_dir() / relative);
}

// An uncompressed AVI (BI_RGB) of `frames` solid frames (tests/unit/engine/vision/video_decoder_test.cpp writes the
// same layout and checks FFmpeg reads it).
std::string make_avi(int width, int height, int num_frames, int fps) {
  auto put32 = [](std::string& s, uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  auto put16 = [](std::string& s, uint16_t v) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>(v >> 8));
  };
  auto chunk = [&](const char* id, const std::string& body) {
    std::string s(id, 4);
    put32(s, static_cast<uint32_t>(body.size()));
    s += body;
    if (body.size() % 2 != 0) s.push_back('\0');
    return s;
  };
  auto list = [&](const char* type, const std::string& body) { return chunk("LIST", std::string(type, 4) + body); };
  const uint32_t frame_bytes = static_cast<uint32_t>(width * height * 3);
  std::string avih;
  for (uint32_t v : {1000000u / fps, frame_bytes * fps, 0u, 0u, static_cast<uint32_t>(num_frames), 0u, 1u, frame_bytes,
                     static_cast<uint32_t>(width), static_cast<uint32_t>(height), 0u, 0u, 0u, 0u})
    put32(avih, v);
  std::string strh = "vidsDIB ";
  put32(strh, 0);
  put16(strh, 0);
  put16(strh, 0);
  for (uint32_t v :
       {0u, 1u, static_cast<uint32_t>(fps), 0u, static_cast<uint32_t>(num_frames), frame_bytes, 0xffffffffu, 0u})
    put32(strh, v);
  for (uint16_t v : {uint16_t{0}, uint16_t{0}, static_cast<uint16_t>(width), static_cast<uint16_t>(height)})
    put16(strh, v);
  std::string strf;
  put32(strf, 40);
  put32(strf, static_cast<uint32_t>(width));
  put32(strf, static_cast<uint32_t>(height));
  put16(strf, 1);
  put16(strf, 24);
  for (uint32_t v : {0u, frame_bytes, 0u, 0u, 0u, 0u}) put32(strf, v);
  std::string movi;
  for (int f = 0; f < num_frames; ++f) movi += chunk("00dc", std::string(frame_bytes, static_cast<char>(f * 20)));
  const std::string hdrl = list("hdrl", chunk("avih", avih) + list("strl", chunk("strh", strh) + chunk("strf", strf)));
  return chunk("RIFF", "AVI " + hdrl + list("movi", movi));
}

std::variant<std::shared_ptr<engine::PromptMedia>, ApiError> load(const std::vector<MediaPart>& parts,
                                                                  const serving::MediaOptions& options,
                                                                  serving::ProcessorKwargs kwargs = {},
                                                                  int64_t max_tokens = 4096) {
  static const engine::vision::ProcessorConfig config;  // transformers' defaults: Qwen2.5-VL's processor
  MediaBudget budget;
  budget.options = &options;
  budget.processor = &config;
  budget.kwargs = kwargs;
  budget.max_tokens = max_tokens;
  return load_media(parts, budget);
}

std::string error_of(const std::variant<std::shared_ptr<engine::PromptMedia>, ApiError>& v) {
  return std::holds_alternative<ApiError>(v) ? std::get<ApiError>(v).message : "";
}

TEST(LoadMedia, ImagesAndVideosBecomeItemsWithGridsTokensAndHashes) {
  const std::string png = fixture("images/tiny_10x10.png");
  const std::string avi = make_avi(64, 48, 8, 4);
  std::vector<MediaPart> parts = {{MediaKind::kImage, data_url(png), "messages[0].content[0]"},
                                  {MediaKind::kVideo, data_url(avi, "video/avi"), "messages[0].content[1]"},
                                  {MediaKind::kImage, data_url(png), "messages[1].content[0]"}};
  auto loaded = load(parts, default_options());
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<engine::PromptMedia>>(loaded)) << error_of(loaded);
  const engine::PromptMedia& media = *std::get<std::shared_ptr<engine::PromptMedia>>(loaded);
  ASSERT_EQ(media.items.size(), 3u);
  const engine::MediaItem& image = media.items[0];
  EXPECT_EQ(image.kind, MediaKind::kImage);
  // 10x10 is below min_pixels (56*56): smart_resize grows it to 56x56 = 4x4 patches, one frame group, 4 tokens.
  EXPECT_EQ(image.grid.t, 1);
  EXPECT_EQ(image.grid.h, 4);
  EXPECT_EQ(image.grid.w, 4);
  EXPECT_EQ(image.num_tokens(), 4);
  EXPECT_EQ(image.pixel_values.size(), 16u * 3 * 2 * 14 * 14);
  EXPECT_NE(image.hash, 0u);
  EXPECT_EQ(media.items[2].hash, image.hash);  // same pixels, same key
  const engine::MediaItem& video = media.items[1];
  EXPECT_EQ(video.kind, MediaKind::kVideo);
  // 8 frames at 4 fps sampled at qwen-vl-utils' 2 fps: 4 frames (the minimum) → t = 2; sample_fps = 4 / 8 * 4 = 2,
  // so a temporal patch of 2 frames spans 1 s.
  EXPECT_EQ(video.grid.t, 2);
  EXPECT_FLOAT_EQ(video.second_per_grid_t, 1.0f);
  EXPECT_EQ(video.pixel_values.size(), static_cast<size_t>(video.grid.num_patches()) * 3 * 2 * 14 * 14);
  EXPECT_NE(video.hash, image.hash);
}

TEST(LoadMedia, RequestKwargsChangeTheSize) {
  const std::string png = fixture("images/tiny_10x10.png");
  serving::ProcessorKwargs kwargs;
  kwargs.min_pixels = 112 * 112;
  auto loaded = load({{MediaKind::kImage, data_url(png), "p"}}, default_options(), kwargs);
  ASSERT_TRUE(std::holds_alternative<std::shared_ptr<engine::PromptMedia>>(loaded)) << error_of(loaded);
  EXPECT_EQ(std::get<std::shared_ptr<engine::PromptMedia>>(loaded)->items[0].num_tokens(), 16);
  kwargs.max_pixels = 56 * 56;  // below min_pixels
  EXPECT_THAT(error_of(load({{MediaKind::kImage, data_url(png), "p"}}, default_options(), kwargs)),
              HasSubstr("min_pixels 12544 is above max_pixels 3136"));
}

TEST(LoadMedia, BadInputIsOneSentenceNamingThePart) {
  const std::string png = fixture("images/tiny_10x10.png");
  serving::MediaOptions one_image = default_options();
  one_image.max_images = 1;
  one_image.max_videos = 0;
  EXPECT_THAT(
      error_of(load({{MediaKind::kImage, data_url(png), "a"}, {MediaKind::kImage, data_url(png), "b"}}, one_image)),
      HasSubstr("2 images, more than the 1 per prompt this model is served with (--limit-mm-per-prompt)"));
  EXPECT_THAT(error_of(load({{MediaKind::kVideo, data_url(png), "a"}}, one_image)), HasSubstr("1 videos, more"));
  EXPECT_THAT(error_of(load({{MediaKind::kImage, data_url(fixture("bad/truncated_palette_200x150.png")), "m[0]"}},
                            default_options())),
              HasSubstr("m[0]: "));
  EXPECT_THAT(error_of(load({{MediaKind::kImage, data_url("GIF89a nothing"), "m[1]"}}, default_options())),
              HasSubstr("m[1]: "));
  EXPECT_THAT(error_of(load({{MediaKind::kImage, data_url(fixture("bad/not_an_image.bmp")), "m"}}, default_options())),
              HasSubstr("m: "));
  EXPECT_THAT(error_of(load({{MediaKind::kImage, "data:image/png;base64,@@@", "m"}}, default_options())),
              HasSubstr("base64"));
  EXPECT_THAT(error_of(load({{MediaKind::kImage, "https://example.com/a.png", "m"}}, default_options())),
              HasSubstr("fetches no http(s) media"));
  EXPECT_THAT(error_of(load({{MediaKind::kVideo, data_url(png), "v"}}, default_options())), HasSubstr("v: "));
  EXPECT_THAT(
      error_of(load({{MediaKind::kVideo, data_url(make_avi(64, 48, 8, 4).substr(0, 300)), "v"}}, default_options())),
      HasSubstr("v: "));
  // Past the context: refused before the pixel values are made.
  EXPECT_THAT(error_of(load({{MediaKind::kImage, data_url(png), "m[2]"}}, default_options(), {}, 4)),
              HasSubstr("the images and videos up to m[2] take 4 tokens, more than the model's context of 4"));
  MediaBudget no_processor;
  serving::MediaOptions options;
  no_processor.options = &options;
  no_processor.max_tokens = 100;
  EXPECT_THAT(error_of(load_media({{MediaKind::kImage, data_url(png), "m"}}, no_processor)),
              HasSubstr("no preprocessor_config.json"));
}

engine::MediaItem item(MediaKind kind, int32_t h, int32_t w, float marker) {
  engine::MediaItem i;
  i.kind = kind;
  i.grid = engine::VisionGrid{1, h, w};
  i.pixel_values = {marker};
  return i;
}

TEST(ExpandMediaTokens, EachPadBecomesItsItemsTokensInOrder) {
  constexpr int32_t kImage = 151655, kVideo = 151656;
  engine::PromptMedia media;
  media.items = {item(MediaKind::kImage, 2, 4, 1), item(MediaKind::kVideo, 2, 2, 2), item(MediaKind::kImage, 2, 2, 3)};
  // The template rendered the video's run first: items follow the runs.
  std::vector<int32_t> ids = {1, kVideo, 2, kImage, 3, kImage, 4};
  auto out = expand_media_tokens(ids, media, {kImage, kVideo});
  ASSERT_TRUE(std::holds_alternative<std::vector<int32_t>>(out)) << std::get<ApiError>(out).message;
  EXPECT_EQ(std::get<std::vector<int32_t>>(out), (std::vector<int32_t>{1, kVideo, 2, kImage, kImage, 3, kImage, 4}));
  ASSERT_EQ(media.items.size(), 3u);
  EXPECT_EQ(media.items[0].pixel_values[0], 2);
  EXPECT_EQ(media.items[1].pixel_values[0], 1);
  EXPECT_EQ(media.items[2].pixel_values[0], 3);

  engine::PromptMedia one;
  one.items = {item(MediaKind::kImage, 2, 2, 1)};
  auto typed = expand_media_tokens({kImage, 5, kImage}, one, {kImage, kVideo});
  ASSERT_TRUE(std::holds_alternative<ApiError>(typed));
  EXPECT_THAT(std::get<ApiError>(typed).message, HasSubstr("2 <|image_pad|> tokens for 1 images"));
  EXPECT_THAT(std::get<ApiError>(typed).message, HasSubstr("typed in a message's text"));
  auto missing = expand_media_tokens({5, 6}, one, {kImage, kVideo});
  ASSERT_TRUE(std::holds_alternative<ApiError>(missing));
  EXPECT_THAT(std::get<ApiError>(missing).message, HasSubstr("0 <|image_pad|> tokens for 1 images"));
  auto no_token = expand_media_tokens({5, 6}, one, {-1, -1});
  ASSERT_TRUE(std::holds_alternative<ApiError>(no_token));
  EXPECT_THAT(std::get<ApiError>(no_token).message, HasSubstr("no <|image_pad|> token"));
  engine::PromptMedia none;
  auto text = expand_media_tokens({kImage}, none, {kImage, kVideo});  // a pad typed without any image
  EXPECT_TRUE(std::holds_alternative<ApiError>(text));
}

TEST(MediaOptions, FlagsParseAndNormaliseInOnePlace) {
  serving::ServeSettings s;
  auto defaults = serving::media_options(s);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->max_images, serving::kDefaultMediaItemsPerPrompt);
  EXPECT_EQ(defaults->max_videos, 999);
  EXPECT_TRUE(defaults->allowed_media_domains.empty());
  engine::testing::TempDir tmp;
  fs::create_directories(tmp.path() / "m");
  fs::create_symlink(tmp.path() / "m", tmp.path() / "link");
  s.limit_mm_per_prompt = R"({"video": 2, "image": 16.0})";
  s.mm_processor_kwargs = R"({"max_pixels": 1003520, "fps": 1})";
  s.allowed_local_media_path = (tmp.path() / "link").string();
  s.allowed_media_domains = " Images.Example.com, 127.0.0.1 ";
  ASSERT_TRUE(serving::normalise_media_settings(s).ok());
  EXPECT_EQ(s.limit_mm_per_prompt, R"({"image":16,"video":2})");
  EXPECT_EQ(s.mm_processor_kwargs, R"({"fps":1.0,"max_pixels":1003520})");
  EXPECT_EQ(s.allowed_local_media_path, fs::canonical(tmp.path() / "m").string());
  EXPECT_EQ(s.allowed_media_domains, "images.example.com,127.0.0.1");
  auto parsed = serving::media_options(s);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->max_images, 16);
  EXPECT_EQ(parsed->max_videos, 2);
  EXPECT_EQ(*parsed->processor.max_pixels, 1003520);

  auto refused = [](void (*set)(serving::ServeSettings&)) {
    serving::ServeSettings bad;
    set(bad);
    return std::string(serving::normalise_media_settings(bad).message());
  };
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.limit_mm_per_prompt = "4"; }), HasSubstr("JSON object"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.limit_mm_per_prompt = R"({"audio": 1})"; }),
              HasSubstr("'audio'; the modalities are image and video"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.limit_mm_per_prompt = R"({"image": -1})"; }),
              HasSubstr("whole number from 0 to 4096"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.mm_processor_kwargs = R"({"resample": 3})"; }),
              HasSubstr("does not take"));
  EXPECT_THAT(
      refused([](serving::ServeSettings& b) { b.mm_processor_kwargs = R"({"min_pixels": 9, "max_pixels": 4})"; }),
      HasSubstr("above max_pixels"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.mm_processor_kwargs = R"({"fps": 0})"; }),
              HasSubstr("'fps' must be a number in (0, 60]"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.allowed_local_media_path = "relative/dir"; }),
              HasSubstr("not an absolute path"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.allowed_local_media_path = "/no/such/folder/here"; }),
              HasSubstr("not a folder the daemon can see"));
  EXPECT_THAT(refused([](serving::ServeSettings& b) { b.allowed_media_domains = "https://a.com/"; }),
              HasSubstr("not a host name"));
}

// A Generator that only answers media_support (the preparation tests never submit).
class FakeGenerator final : public serving::Generator {
 public:
  explicit FakeGenerator(absl::Status support) : support_(std::move(support)) {}
  absl::StatusOr<std::unique_ptr<serving::GenerationHandle>> submit(
      std::vector<int32_t>, const serving::GenerationParams&, serving::EventCallback,
      std::shared_ptr<const engine::PromptMedia>) override {
    return absl::UnimplementedError("not in this test");
  }
  absl::Status media_support() const override { return support_; }
  serving::GeneratorStats stats() const override { return {}; }
  int32_t max_model_len() const override { return 4096; }
  int32_t max_num_seqs() const override { return 8; }

 private:
  absl::Status support_;
};

std::unique_ptr<serving::ServedModel> vl_model(absl::Status support, const std::string& modality = "T&I+&V+") {
  const fs::path dir = engine::vision::testing::shared_models() / "Qwen/Qwen2.5-VL-3B-Instruct";
  auto model = std::make_unique<serving::ServedModel>();
  model->name = "vl";
  model->modality = modality;
  model->generator = std::make_unique<FakeGenerator>(std::move(support));
  absl::StatusOr<engine::ChatTemplate> tmpl = engine::ChatTemplate::load(dir);  // chat_template.json, as served
  if (!tmpl.ok()) return nullptr;
  model->chat_template = std::make_shared<const engine::ChatTemplate>(*std::move(tmpl));
  return model;
}

std::variant<RenderedChat, ApiError> render(const serving::ServedModel& model, const std::string& body) {
  return render_chat_prompt(model, parse(body), /*include_tools=*/false, nullptr);
}

TEST(MediaChat, TheQwen25VlTemplateRendersOnePadPerPartInEveryTurn) {
  std::unique_ptr<serving::ServedModel> model = vl_model(absl::OkStatus());
  if (model == nullptr) GTEST_SKIP() << "shared/models/Qwen/Qwen2.5-VL-3B-Instruct is not here";
  auto rendered = render(*model, R"({"messages": [
      {"role": "user", "content": [{"type": "text", "text": "Compare"},
                                   {"type": "image_url", "image_url": {"url": "data:a"}},
                                   {"type": "image_url", "image_url": {"url": "data:b"}}]},
      {"role": "assistant", "content": "Two cats."},
      {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "data:c"}},
                                   {"type": "text", "text": "And this?"}]}]})");
  ASSERT_TRUE(std::holds_alternative<RenderedChat>(rendered)) << std::get<ApiError>(rendered).message;
  const RenderedChat& chat = std::get<RenderedChat>(rendered);
  EXPECT_EQ(chat.text,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nCompare"
            "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
            "<|im_start|>assistant\nTwo cats.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|video_pad|><|vision_end|>And this?<|im_end|>\n<|im_start|>assistant\n");
  ASSERT_EQ(chat.media.size(), 3u);
  EXPECT_EQ(chat.media[0].url, "data:a");
  EXPECT_EQ(chat.media[0].param, "messages[0].content[1]");
  EXPECT_EQ(chat.media[2].kind, MediaKind::kVideo);
  EXPECT_EQ(chat.media[2].param, "messages[2].content[0]");
}

TEST(MediaChat, TextOnlyModelsAndOtherPartTypesAreRefused) {
  const std::string body =
      R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:a"}}]}]})";
  std::unique_ptr<serving::ServedModel> text_only = vl_model(absl::OkStatus(), "T");
  if (text_only == nullptr) GTEST_SKIP() << "shared/models/Qwen/Qwen2.5-VL-3B-Instruct is not here";
  auto refused = render(*text_only, body);
  ASSERT_TRUE(std::holds_alternative<ApiError>(refused));
  EXPECT_THAT(std::get<ApiError>(refused).message, HasSubstr("model 'vl' accepts text only"));

  std::unique_ptr<serving::ServedModel> vl = vl_model(absl::OkStatus());
  auto audio = render(*vl, R"({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})");
  ASSERT_TRUE(std::holds_alternative<ApiError>(audio));
  EXPECT_THAT(std::get<ApiError>(audio).message, HasSubstr("'input_audio' parts are not supported"));
  auto malformed = render(*vl, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})");
  ASSERT_TRUE(std::holds_alternative<ApiError>(malformed));
  EXPECT_THAT(std::get<ApiError>(malformed).message, HasSubstr("messages[0].content[0]: a 'image_url' part must be"));
  // Text parts alone stay one string on a media model: the rendering is the text chat's.
  auto text = render(*vl, R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                          {"type": "text", "text": "b"}]}]})");
  ASSERT_TRUE(std::holds_alternative<RenderedChat>(text));
  EXPECT_THAT(std::get<RenderedChat>(text).text, HasSubstr("<|im_start|>user\na\nb<|im_end|>"));
  EXPECT_TRUE(std::get<RenderedChat>(text).media.empty());
}

// The whole preparation of a chat with an image: the Qwen2.5 tokenizer (its added tokens hold <|image_pad|>),
// the pad expanded to the image's 4 tokens in the ids, usage and the choice's media; an engine whose
// media_support() says no turns the same request into a 400 with its sentence.
TEST(MediaChat, PrepareChatExpandsThePadAndAsksTheEngineLast) {
  std::unique_ptr<serving::ServedModel> model = vl_model(absl::OkStatus());
  if (model == nullptr) GTEST_SKIP() << "shared/models/Qwen/Qwen2.5-VL-3B-Instruct is not here";
  absl::StatusOr<std::unique_ptr<engine::Tokenizer>> tokenizer =
      engine::Tokenizer::load(engine::vision::testing::shared_models() / "Qwen/Qwen2.5-7B-Instruct");
  if (!tokenizer.ok()) GTEST_SKIP() << tokenizer.status();
  model->tokenizer = std::shared_ptr<const engine::Tokenizer>(*std::move(tokenizer));
  static const engine::vision::ProcessorConfig config;
  model->processor_config = std::shared_ptr<const engine::vision::ProcessorConfig>(&config, [](auto*) {});
  const std::string png = fixture("images/tiny_10x10.png");
  const RequestJson body = parse(R"({"model": "vl", "max_tokens": 4, "messages": [{"role": "user", "content": [
      {"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": ")" +
                                 data_url(png) + R"("}}]}]})");
  auto prepared = prepare_chat(*model, body);
  ASSERT_TRUE(std::holds_alternative<SessionOptions>(prepared)) << std::get<ApiError>(prepared).message;
  const SessionOptions& options = std::get<SessionOptions>(prepared);
  ASSERT_EQ(options.choices.size(), 1u);
  const ChoiceSpec& choice = options.choices[0];
  ASSERT_NE(choice.media, nullptr);
  ASSERT_EQ(choice.media->items.size(), 1u);
  const std::vector<int32_t>& ids = choice.prompt_ids;
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 151655), 4);
  auto first = std::find(ids.begin(), ids.end(), 151655);
  ASSERT_NE(first, ids.end());
  EXPECT_EQ(*(first - 1), 151652);  // <|vision_start|>
  EXPECT_EQ(*(first + 4), 151653);  // <|vision_end|>, after the run
  EXPECT_EQ(options.prompt_token_counts, std::vector<int32_t>{static_cast<int32_t>(ids.size())});
  // Unexpanded, the same prompt is 3 tokens shorter.
  auto text = render_chat_prompt(*model, body, /*include_tools=*/true, nullptr);
  ASSERT_TRUE(std::holds_alternative<RenderedChat>(text));
  EXPECT_EQ(model->tokenizer->encode(std::get<RenderedChat>(text).text, false).size() + 3, ids.size());

  model->generator = std::make_unique<FakeGenerator>(absl::FailedPreconditionError("the vision tower is not loaded"));
  auto refused = prepare_chat(*model, body);
  ASSERT_TRUE(std::holds_alternative<ApiError>(refused));
  EXPECT_EQ(std::get<ApiError>(refused).status, 400);
  EXPECT_EQ(std::get<ApiError>(refused).message,
            "model 'vl' cannot take images or videos: the vision tower is not loaded");
  // Bad input still gets its own sentence first.
  const RequestJson bad = parse(R"({"model": "vl", "messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})");
  auto bad_image = prepare_chat(*model, bad);
  ASSERT_TRUE(std::holds_alternative<ApiError>(bad_image));
  EXPECT_THAT(std::get<ApiError>(bad_image).message, HasSubstr("messages[0].content[0]: "));
  EXPECT_THAT(std::get<ApiError>(bad_image).message, ::testing::Not(HasSubstr("vision tower")));
  // A pad token typed in a text chat, with no item for it, never reaches the engine.
  auto stray =
      prepare_chat(*model, parse(R"({"model": "vl", "messages": [{"role": "user", "content": "a <|video_pad|>"}]})"));
  ASSERT_TRUE(std::holds_alternative<ApiError>(stray));
  EXPECT_EQ(std::get<ApiError>(stray).message,
            "the prompt holds a <|video_pad|> token with no image or video for it; send media as image_url / "
            "video_url parts");
  // A request's mm_processor_kwargs are checked even without media.
  auto bad_kwargs = prepare_chat(*model, parse(R"({"model": "vl", "messages": [{"role": "user", "content": "x"}],
                                                    "mm_processor_kwargs": {"max_pixels": "big"}})"));
  ASSERT_TRUE(std::holds_alternative<ApiError>(bad_kwargs));
  EXPECT_EQ(std::get<ApiError>(bad_kwargs).param, "mm_processor_kwargs");
}

}  // namespace
}  // namespace bm::daemon::openai
