#include "cli/table.h"

#include <gtest/gtest.h>

namespace bm::cli {
namespace {

TEST(TableTest, AlignsColumnsAndRightAlignsNumbers) {
  Table t;
  t.add_column("NAME");
  t.add_column("SIZE", Table::Align::kRight);
  t.add_row({"qwen2.5-0.5b-origin", "0.5B"});
  t.add_row({"qwq-32b-awq", "32.0B"});
  EXPECT_EQ(t.render(),
            " NAME                  SIZE\n"
            " -------------------  -----\n"
            " qwen2.5-0.5b-origin   0.5B\n"
            " qwq-32b-awq          32.0B\n");
}

TEST(TableTest, WideCharactersCountTwoColumns) {
  EXPECT_EQ(display_width("abc"), 3u);
  EXPECT_EQ(display_width("模型"), 4u);
  EXPECT_EQ(display_width("é"), 1u);
  Table t;
  t.add_column("A");
  t.add_column("B");
  t.add_row({"模型", "x"});
  t.add_row({"abcd", "y"});
  std::string out = t.render();
  EXPECT_NE(out.find(" 模型  x\n"), std::string::npos) << out;
}

TEST(TableTest, ShortRowsArePadded) {
  Table t;
  t.add_column("A");
  t.add_column("B");
  t.add_row({"only"});
  EXPECT_NE(t.render().find(" only\n"), std::string::npos);
}

}  // namespace
}  // namespace bm::cli
