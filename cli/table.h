#pragma once
// Plain-text tables in the style of the original's Rich SIMPLE box: a header, a rule, rows; no wrapping.
#include <string>
#include <vector>

namespace bm::cli {

class Table {
 public:
  enum class Align { kLeft, kRight };
  void add_column(std::string header, Align align = Align::kLeft);
  void add_row(std::vector<std::string> cells);
  std::string render() const;
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> headers_;
  std::vector<Align> aligns_;
  std::vector<std::vector<std::string>> rows_;
};

// Display width of UTF-8 text (code points; wide CJK counted as two columns).
size_t display_width(const std::string& text);

}  // namespace bm::cli
