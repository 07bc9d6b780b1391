#include "engine/vision/video_decoder.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"

namespace bm::engine::vision {
namespace {

std::string av_error(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

absl::Status bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("The video ", what));
}

// FFmpeg reads the bytes in place through a custom AVIOContext.
struct MemoryInput {
  std::string_view bytes;
  int64_t pos = 0;
};

int read_packet(void* opaque, uint8_t* out, int size) {
  auto* in = static_cast<MemoryInput*>(opaque);
  const int64_t left = static_cast<int64_t>(in->bytes.size()) - in->pos;
  const int n = static_cast<int>(std::min<int64_t>(size, left));
  if (n <= 0) return AVERROR_EOF;
  std::memcpy(out, in->bytes.data() + in->pos, n);
  in->pos += n;
  return n;
}

int64_t seek(void* opaque, int64_t offset, int whence) {
  auto* in = static_cast<MemoryInput*>(opaque);
  const auto size = static_cast<int64_t>(in->bytes.size());
  if ((whence & AVSEEK_SIZE) != 0) return size;
  whence &= ~AVSEEK_FORCE;
  int64_t target = offset;
  if (whence == SEEK_CUR) target = in->pos + offset;
  if (whence == SEEK_END) target = size + offset;
  if (target < 0 || target > size) return -1;
  in->pos = target;
  return target;
}

absl::Status check_size(const AVCodecParameters* par, const VideoLimits& limits) {
  if (par->codec_type != AVMEDIA_TYPE_VIDEO) return absl::OkStatus();
  if (par->width > limits.max_side || par->height > limits.max_side ||
      int64_t{par->width} * par->height > limits.max_frame_pixels) {
    return bad(absl::StrCat("frames are ", par->width, "x", par->height, ", over the limit of ",
                            limits.max_frame_pixels, " pixels (", limits.max_side, " per side)."));
  }
  return absl::OkStatus();
}

// One demuxer over the bytes; closing frees the format context, the AVIO context and its buffer.
class Demuxer {
 public:
  ~Demuxer() {
    avformat_close_input(&format_);
    if (io_ != nullptr) av_freep(&io_->buffer);
    avio_context_free(&io_);
  }

  absl::Status open(std::string_view bytes, const VideoLimits& limits) {
    input_.bytes = bytes;
    constexpr int kBufferSize = 1 << 16;
    auto* buffer = static_cast<uint8_t*>(av_malloc(kBufferSize));
    if (buffer == nullptr) return absl::ResourceExhaustedError("Out of memory opening the video.");
    io_ = avio_alloc_context(buffer, kBufferSize, 0, &input_, read_packet, nullptr, seek);
    if (io_ == nullptr) {
      av_free(buffer);
      return absl::ResourceExhaustedError("Out of memory opening the video.");
    }
    format_ = avformat_alloc_context();
    if (format_ == nullptr) return absl::ResourceExhaustedError("Out of memory opening the video.");
    format_->pb = io_;
    format_->flags |= AVFMT_FLAG_CUSTOM_IO;
    if (const int rc = avformat_open_input(&format_, nullptr, nullptr, nullptr); rc < 0) {
      return bad(absl::StrCat("cannot be read: ", av_error(rc), "."));
    }
    // The size a container declares is checked before anything is decoded; find_stream_info then decodes frames
    // to learn what the header left out, with max_pixels so FFmpeg itself refuses larger frames meanwhile.
    for (unsigned i = 0; i < format_->nb_streams; ++i) {
      if (auto s = check_size(format_->streams[i]->codecpar, limits); !s.ok()) return s;
    }
    std::vector<AVDictionary*> options(format_->nb_streams, nullptr);
    for (AVDictionary*& o : options) av_dict_set_int(&o, "max_pixels", limits.max_frame_pixels, 0);
    const int rc = avformat_find_stream_info(format_, options.data());
    for (AVDictionary*& o : options) av_dict_free(&o);
    if (rc < 0) return bad(absl::StrCat("has unreadable streams: ", av_error(rc), "."));
    stream_ = av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    if (stream_ < 0) return bad("has no video stream.");
    const AVCodecParameters* par = stream()->codecpar;
    if (auto s = check_size(par, limits); !s.ok()) return s;
    if (par->width <= 0 || par->height <= 0) return bad("stream has no frame size.");
    return absl::OkStatus();
  }

  AVFormatContext* format() const { return format_; }
  AVStream* stream() const { return format_->streams[stream_]; }
  int stream_index() const { return stream_; }

 private:
  MemoryInput input_;
  AVIOContext* io_ = nullptr;
  AVFormatContext* format_ = nullptr;
  int stream_ = -1;
};

struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct CodecDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct ScaleDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

// The selection loop of the decoding pass: frame `position` of the stream has arrived.
class Collector {
 public:
  explicit Collector(std::vector<int64_t> positions) : positions_(std::move(positions)) {}

  absl::Status take(const AVFrame& frame, DecodedVideo& out) {
    const int64_t position = next_position_++;
    if (frame.width <= 0 || frame.height <= 0) return bad("has a frame without a size.");
    if (width_ == 0) {
      width_ = frame.width;
      height_ = frame.height;
    } else if (frame.width != width_ || frame.height != height_) {
      return bad(absl::StrCat("changes frame size midway (", width_, "x", height_, " to ", frame.width, "x",
                              frame.height, ")."));
    }
    while (wanted_ < positions_.size() && positions_[wanted_] == position) {
      auto rgb = convert(frame);
      if (!rgb.ok()) return rgb.status();
      out.frames.push_back(*std::move(rgb));
      out.frame_positions.push_back(position);
      ++wanted_;
    }
    return absl::OkStatus();
  }

  bool done() const { return wanted_ == positions_.size(); }
  int64_t decoded() const { return next_position_; }

 private:
  absl::StatusOr<RgbImage> convert(const AVFrame& frame) {
    if (scale_ == nullptr) {
      // Chroma is placed where the stream says it is (JPEG and MJPEG: centered; MPEG: left) and interpolated
      // linearly, the way libjpeg's "fancy" upsampling does, so a still JPEG and the same JPEG as a video frame
      // come out close.
      scale_.reset(sws_alloc_context());
      if (scale_ == nullptr) return absl::ResourceExhaustedError("Out of memory converting a video frame.");
      int x_pos = -513, y_pos = -513;  // swscale's "unset"
      if (frame.chroma_location != AVCHROMA_LOC_UNSPECIFIED) {
        avcodec_enum_to_chroma_pos(&x_pos, &y_pos, frame.chroma_location);
      }
      SwsContext* s = scale_.get();
      const bool ok =
          av_opt_set_int(s, "srcw", frame.width, 0) >= 0 && av_opt_set_int(s, "srch", frame.height, 0) >= 0 &&
          av_opt_set_int(s, "src_format", frame.format, 0) >= 0 && av_opt_set_int(s, "dstw", frame.width, 0) >= 0 &&
          av_opt_set_int(s, "dsth", frame.height, 0) >= 0 &&
          av_opt_set_int(s, "dst_format", AV_PIX_FMT_RGB24, 0) >= 0 &&
          av_opt_set_int(s, "sws_flags", SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, 0) >= 0 &&
          av_opt_set_int(s, "src_h_chr_pos", x_pos, 0) >= 0 && av_opt_set_int(s, "src_v_chr_pos", y_pos, 0) >= 0 &&
          sws_init_context(s, nullptr, nullptr) >= 0;
      if (!ok) {
        scale_.reset();
        return bad("has a pixel format that cannot be converted to RGB.");
      }
    }
    RgbImage rgb;
    rgb.width = frame.width;
    rgb.height = frame.height;
    rgb.pixels.resize(static_cast<size_t>(rgb.width) * rgb.height * 3);
    uint8_t* planes[4] = {rgb.pixels.data(), nullptr, nullptr, nullptr};
    int strides[4] = {rgb.width * 3, 0, 0, 0};
    if (sws_scale(scale_.get(), frame.data, frame.linesize, 0, frame.height, planes, strides) != frame.height) {
      return bad("has a frame that could not be converted to RGB.");
    }
    return rgb;
  }

  std::vector<int64_t> positions_;
  size_t wanted_ = 0;
  int64_t next_position_ = 0;
  int width_ = 0;
  int height_ = 0;
  std::unique_ptr<SwsContext, ScaleDeleter> scale_;
};

}  // namespace

absl::StatusOr<DecodedVideo> decode_video(std::string_view bytes, const VideoSampling& sampling,
                                          const VideoLimits& limits, int64_t frame_factor) {
  if (bytes.empty()) return bad("is empty.");
  // FFmpeg logs every oddity of untrusted input to stderr; errors reach the caller as statuses instead. Its
  // demuxers also allocate what a damaged header declares (the fuzzer found 578 MB for a 1 KB AVI in
  // avformat_open_input, before any of our checks can run): av_max_alloc caps every single allocation. 256 MiB
  // is eight times the largest buffer a frame within the default limits needs (3840x2160 RGBA, 33 MB).
  static std::once_flag setup;
  std::call_once(setup, [] {
    av_log_set_level(AV_LOG_QUIET);
    av_max_alloc(size_t{256} << 20);
  });
  DecodedVideo out;
  std::unique_ptr<AVPacket, PacketDeleter> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameDeleter> frame(av_frame_alloc());
  if (packet == nullptr || frame == nullptr) return absl::ResourceExhaustedError("Out of memory decoding a video.");

  // Pass 1: size, frame rate and frame count from the container, without decoding.
  {
    Demuxer demuxer;
    if (auto s = demuxer.open(bytes, limits); !s.ok()) return s;
    AVRational rate = demuxer.stream()->avg_frame_rate;
    if (rate.num <= 0 || rate.den <= 0) rate = demuxer.stream()->r_frame_rate;
    if (rate.num <= 0 || rate.den <= 0) return bad("has no frame rate.");
    out.fps = av_q2d(rate);
    while (av_read_frame(demuxer.format(), packet.get()) >= 0) {
      if (packet->stream_index == demuxer.stream_index()) ++out.total_frames;
      av_packet_unref(packet.get());
      if (out.total_frames > limits.max_frames) {
        return bad(absl::StrCat("has more than ", limits.max_frames, " frames."));
      }
    }
  }
  auto nframes = smart_nframes(sampling, out.total_frames, out.fps, frame_factor);
  if (!nframes.ok()) return nframes.status();
  Collector collector(frame_indices(0, out.total_frames - 1, *nframes));

  // Pass 2: decode in order, convert only the selected frames.
  Demuxer demuxer;
  if (auto s = demuxer.open(bytes, limits); !s.ok()) return s;
  const AVCodecParameters* par = demuxer.stream()->codecpar;
  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  if (codec == nullptr) return bad(absl::StrCat("codec (", avcodec_get_name(par->codec_id), ") is not supported."));
  std::unique_ptr<AVCodecContext, CodecDeleter> decoder(avcodec_alloc_context3(codec));
  if (decoder == nullptr) return absl::ResourceExhaustedError("Out of memory decoding a video.");
  if (avcodec_parameters_to_context(decoder.get(), par) < 0) return bad("stream parameters are invalid.");
  decoder->thread_count = 1;  // request threads are the server's to schedule
  decoder->max_pixels = limits.max_frame_pixels;
  if (const int rc = avcodec_open2(decoder.get(), codec, nullptr); rc < 0) {
    return bad(absl::StrCat("decoder cannot start: ", av_error(rc), "."));
  }
  auto drain = [&]() -> absl::Status {
    for (;;) {
      const int rc = avcodec_receive_frame(decoder.get(), frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return absl::OkStatus();
      if (rc < 0) return bad(absl::StrCat("has a frame that cannot be decoded: ", av_error(rc), "."));
      absl::Status s = collector.take(*frame, out);
      av_frame_unref(frame.get());
      if (!s.ok()) return s;
    }
  };
  while (!collector.done() && av_read_frame(demuxer.format(), packet.get()) >= 0) {
    if (packet->stream_index == demuxer.stream_index()) {
      const int rc = avcodec_send_packet(decoder.get(), packet.get());
      av_packet_unref(packet.get());
      if (rc < 0 && rc != AVERROR(EAGAIN)) return bad(absl::StrCat("data cannot be decoded: ", av_error(rc), "."));
      if (auto s = drain(); !s.ok()) return s;
    } else {
      av_packet_unref(packet.get());
    }
  }
  if (!collector.done()) {
    avcodec_send_packet(decoder.get(), nullptr);
    if (auto s = drain(); !s.ok()) return s;
  }
  if (!collector.done()) {
    return bad(absl::StrCat("decodes to ", collector.decoded(), " frames, fewer than the ", out.total_frames,
                            " its container lists."));
  }
  return out;
}

}  // namespace bm::engine::vision
