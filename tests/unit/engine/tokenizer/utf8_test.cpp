#include "engine/tokenizer/utf8.h"

#include "gtest/gtest.h"

namespace bm::engine::utf8 {
namespace {

constexpr std::string_view kR = "\xEF\xBF\xBD";

std::string reps(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += kR;
  return s;
}

TEST(Utf8Test, ValidTextIsUnchanged) {
  const std::string text = "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80z";  // a é 你 😀 z
  EXPECT_TRUE(is_valid(text));
  EXPECT_EQ(sanitize(text), text);
  EXPECT_TRUE(is_valid(""));
}

// One U+FFFD per maximal subpart, as Rust's String::from_utf8_lossy (Unicode §3.9, "best practice").
TEST(Utf8Test, ReplacesMaximalSubparts) {
  EXPECT_EQ(sanitize("\x80"), reps(1));
  EXPECT_EQ(sanitize("\xC0\xAF"), reps(2));          // overlong lead: each byte alone
  EXPECT_EQ(sanitize("\xE0\x80\x80"), reps(3));      // E0 needs A0..BF next
  EXPECT_EQ(sanitize("\xED\xA0\x80"), reps(3));      // surrogate
  EXPECT_EQ(sanitize("\xF4\x90\x80\x80"), reps(4));  // above U+10FFFF
  EXPECT_EQ(sanitize("\xE2\x82"), reps(1));          // truncated at the end: one
  EXPECT_EQ(sanitize("\xE2\x82x"), reps(1) + "x");   // broken off: one
  EXPECT_EQ(sanitize("\xF0\x9F\x98"), reps(1));
  EXPECT_EQ(sanitize("\xF0\x9F\x98\xF0\x9F\x98\x80"), reps(1) + "\xF0\x9F\x98\x80");
  EXPECT_EQ(sanitize("\xFF\xFE"), reps(2));
  EXPECT_EQ(sanitize(std::string("a\0b", 3)), std::string("a\0b", 3));
}

TEST(Utf8Test, DecodeReportsLengths) {
  EXPECT_EQ(decode("\xE4\xBD\xA0", 0).cp, U'\u4F60');
  EXPECT_EQ(decode("\xE4\xBD\xA0", 0).length, 3);
  EXPECT_FALSE(decode("\xE4\xBD", 0).valid);
  EXPECT_EQ(decode("\xE4\xBD", 0).length, 2);
}

TEST(Utf8Test, IncompleteTail) {
  EXPECT_EQ(incomplete_tail_length(""), 0u);
  EXPECT_EQ(incomplete_tail_length("abc"), 0u);
  EXPECT_EQ(incomplete_tail_length("a\xE4"), 1u);
  EXPECT_EQ(incomplete_tail_length("a\xE4\xBD"), 2u);
  EXPECT_EQ(incomplete_tail_length("a\xE4\xBD\xA0"), 0u);
  EXPECT_EQ(incomplete_tail_length("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_tail_length("\xE0\x80"), 0u);  // can never complete
  EXPECT_EQ(incomplete_tail_length("\xBD"), 0u);      // a stray continuation byte
  EXPECT_EQ(incomplete_tail_length("\xFF"), 0u);
}

TEST(Utf8Test, AppendEncodes) {
  std::string s;
  for (char32_t cp : {U'a', U'\u00E9', U'\u4F60', U'\U0001F600'}) append(s, cp);
  EXPECT_EQ(s, "a\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace bm::engine::utf8
