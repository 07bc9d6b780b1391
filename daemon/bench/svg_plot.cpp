#include "daemon/bench/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bm::daemon::bench {
namespace {

using Result = bmserver::v1::BenchmarkResult;

struct Panel {
  const char* title;
  const char* unit;
  std::function<double(const Result&)> value;
};

constexpr double kPanelWidth = 360, kPanelHeight = 230, kMarginLeft = 70, kMarginTop = 70, kGapX = 40, kGapY = 70;
constexpr int kColumns = 3;
const char* const kColors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                               "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// 1, 2, 5 × 10^k at or above v.
double nice_ceiling(double v) {
  if (v <= 0) return 1;
  double base = std::pow(10, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * base >= v * 0.999) return m * base;
  return 10 * base;
}

std::string format_tick(double v) {
  if (v >= 10000) return absl::StrFormat("%.0fk", v / 1000);
  if (v >= 100 || v == std::floor(v)) return absl::StrFormat("%.0f", v);
  if (v >= 1) return absl::StrFormat("%.1f", v);
  return absl::StrFormat("%.2g", v);
}

}  // namespace

std::string render_svg_plot(const std::vector<Result>& results, const std::string& title) {
  const std::vector<Panel> panels = {
      {"Output throughput", "tokens/s", [](const Result& r) { return r.completion_token_throughput(); }},
      {"Total throughput", "tokens/s", [](const Result& r) { return r.total_token_throughput(); }},
      {"Request throughput", "requests/min", [](const Result& r) { return r.request_throughput_min(); }},
      {"Time to first token (p50)", "ms", [](const Result& r) { return r.ttft_ms().p50(); }},
      {"Time per output token (p50)", "ms", [](const Result& r) { return r.tpot_ms().p50(); }},
      {"End-to-end latency (p50)", "s", [](const Result& r) { return r.e2el_ms().p50() / 1000; }},
  };
  // One series per (model, GPU, P, C, image workload), points sorted by concurrency; the images are a string
  // ("" for text, "1×448x448") so that a text and an image sweep of the same P and C stay two lines.
  using Key = std::tuple<std::string, std::string, int32_t, int32_t, std::string>;
  std::map<Key, std::vector<const Result*>> series;
  std::set<int32_t> xs;
  std::set<std::string> models;
  for (const Result& r : results) {
    std::string images = r.images_per_prompt() > 0
                             ? absl::StrCat(r.images_per_prompt(), "×", r.image_width(), "x", r.image_height())
                             : std::string();
    series[{r.model_name(), r.nvidia_device_name(), r.num_prompt_tokens(), r.num_completion_tokens(), images}]
        .push_back(&r);
    xs.insert(r.num_requests());
    models.insert(r.model_name());
  }
  for (auto& [key, points] : series)
    std::sort(points.begin(), points.end(),
              [](const Result* a, const Result* b) { return a->num_requests() < b->num_requests(); });

  int rows = (static_cast<int>(panels.size()) + kColumns - 1) / kColumns;
  double legend_height = 24.0 * static_cast<double>((series.size() + 2) / 3) + 20;
  double width = kMarginLeft + kColumns * (kPanelWidth + kGapX) + 10;
  double height = kMarginTop + rows * (kPanelHeight + kGapY) + legend_height;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      width, height, width, height);
  absl::StrAppend(&svg, "<text x=\"", kMarginLeft, "\" y=\"32\" font-size=\"20\" font-weight=\"bold\" fill=\"#222\">",
                  escape(title), "</text>\n");
  absl::StrAppend(&svg, "<text x=\"", kMarginLeft, "\" y=\"52\" font-size=\"13\" fill=\"#666\">",
                  "x: concurrent requests (log scale); one line per prompt → completion tokens</text>\n");
  if (results.empty()) {
    absl::StrAppend(&svg, "<text x=\"", kMarginLeft, "\" y=\"120\" font-size=\"16\">no results</text>\n</svg>\n");
    return svg;
  }

  double x_min = std::log2(static_cast<double>(*xs.begin()));
  double x_max = std::log2(static_cast<double>(*xs.rbegin()));
  if (x_max - x_min < 1e-9) x_max = x_min + 1;
  for (size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    double left = kMarginLeft + static_cast<double>(p % kColumns) * (kPanelWidth + kGapX);
    double top = kMarginTop + static_cast<double>(p / kColumns) * (kPanelHeight + kGapY) + 20;
    double y_top = 0;
    for (const Result& r : results) y_top = std::max(y_top, panel.value(r));
    y_top = nice_ceiling(y_top);
    auto px = [&](int32_t x) {
      return left + (std::log2(static_cast<double>(x)) - x_min) / (x_max - x_min) * kPanelWidth;
    };
    auto py = [&](double y) { return top + kPanelHeight - std::max(0.0, y) / y_top * kPanelHeight; };

    absl::StrAppendFormat(&svg,
                          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\" fill=\"#222\">%s "
                          "<tspan font-weight=\"normal\" fill=\"#666\">(%s)</tspan></text>\n",
                          left, top - 12, escape(panel.title), escape(panel.unit));
    constexpr int kTicks = 5;
    for (int t = 0; t <= kTicks; ++t) {
      double v = y_top * t / kTicks;
      double y = py(v);
      absl::StrAppendFormat(&svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", left, y,
                            left + kPanelWidth, y, t == 0 ? "#888" : "#e5e5e5");
      absl::StrAppendFormat(
          &svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">%s</text>\n", left - 6,
          y + 4, format_tick(v));
    }
    double last_label = -1e9;
    for (int32_t x : xs) {
      double xpos = px(x);
      absl::StrAppendFormat(&svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>\n", xpos,
                            top, xpos, top + kPanelHeight);
      if (xpos - last_label < 22) continue;  // crowded labels stay unreadable; the grid line still shows
      last_label = xpos;
      absl::StrAppendFormat(
          &svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\">%d</text>\n", xpos,
          top + kPanelHeight + 16, x);
    }
    size_t color = 0;
    for (const auto& [key, points] : series) {
      const char* c = kColors[color++ % std::size(kColors)];
      std::string path;
      for (const Result* r : points)
        absl::StrAppendFormat(&path, "%s%.1f,%.1f", path.empty() ? "" : " ", px(r->num_requests()),
                              py(panel.value(*r)));
      absl::StrAppendFormat(&svg, "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\"/>\n", path,
                            c);
      for (const Result* r : points)
        absl::StrAppendFormat(
            &svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>N=%d: %s %s</title></circle>\n",
            px(r->num_requests()), py(panel.value(*r)), c, r->num_requests(), format_tick(panel.value(*r)),
            escape(panel.unit));
    }
  }
  // Legend under the panels.
  double legend_top = kMarginTop + rows * (kPanelHeight + kGapY) + 4;
  size_t i = 0;
  for (const auto& [key, points] : series) {
    const auto& [model, gpu, prompt, completion, images] = key;
    double x = kMarginLeft + static_cast<double>(i % 3) * (kPanelWidth + kGapX);
    double y = legend_top + 24.0 * static_cast<double>(i / 3);
    const char* c = kColors[i % std::size(kColors)];
    std::string label = absl::StrCat(prompt, " → ", completion, " tokens");
    if (!images.empty()) absl::StrAppend(&label, ", ", images, " images");
    if (models.size() > 1) label = absl::StrCat(model, ": ", label);
    absl::StrAppend(&label, " (", gpu, ")");
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>\n",
                          x, y, x + 26, y, c);
    absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" fill=\"#222\">%s</text>\n", x + 34, y + 4,
                          escape(label));
    ++i;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace bm::daemon::bench
