#include "daemon/bench/svg_plot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace bm::daemon::bench {
namespace {

using ::testing::HasSubstr;

TEST(SvgPlotTest, OneLinePerPairInEveryPanelWithEscapedText) {
  std::vector<bmserver::v1::BenchmarkResult> results;
  for (int p : {128, 1024})
    for (int n : {1, 2, 4, 8, 9}) {
      bmserver::v1::BenchmarkResult r;
      r.set_model_name("m<&>");
      r.set_nvidia_device_name("cpu");
      r.set_num_prompt_tokens(p);
      r.set_num_completion_tokens(64);
      r.set_num_requests(n);
      r.set_completion_token_throughput(10.0 * n);
      r.mutable_ttft_ms()->set_p50(5.0 * n);
      results.push_back(r);
    }
  std::string svg = render_svg_plot(results, "bench m<&>");
  EXPECT_THAT(svg, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, HasSubstr("bench m&lt;&amp;&gt;"));
  EXPECT_THAT(svg, HasSubstr("128 → 64 tokens (cpu)"));
  EXPECT_THAT(svg, HasSubstr("1024 → 64 tokens (cpu)"));
  size_t lines = 0;
  for (size_t pos = 0; (pos = svg.find("<polyline", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, 2u * 6u);  // two pairs × six panels
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
}

TEST(SvgPlotTest, EmptyResultsStillMakeAValidDocument) {
  std::string svg = render_svg_plot({}, "nothing");
  EXPECT_THAT(svg, HasSubstr("no results"));
  EXPECT_THAT(svg, HasSubstr("</svg>"));
}

}  // namespace
}  // namespace bm::daemon::bench
