#include "engine/tokenizer/normalizer.h"

#include "gtest/gtest.h"

namespace bm::engine {
namespace {

TEST(NormalizerTest, ComposesAndReorders) {
  EXPECT_EQ(nfc("e\u0301"), "\u00E9");
  EXPECT_EQ(nfc("a\u0302\u0323"), "\u1EAD");        // marks reordered (220 before 230), then composed
  EXPECT_EQ(nfc("\u212B"), "\u00C5");               // singleton decomposition (ANGSTROM SIGN)
  EXPECT_EQ(nfc("\u0958"), "\u0915\u093C");         // composition exclusion stays decomposed
  EXPECT_EQ(nfc("\u1100\u1161\u11A8"), "\uAC01");   // conjoining jamo -> Hangul syllable
  EXPECT_EQ(nfc("\uAC00\u11A8"), "\uAC01");         // LV + T
  EXPECT_EQ(nfc("e\u0301\u0301"), "\u00E9\u0301");  // the second acute is blocked
}

TEST(NormalizerTest, LeavesNfcTextAlone) {
  for (const char* text : {"plain ascii", "\u00E9t\u00E9", "\u4F60\u597D", "\U0001F600", ""}) {
    EXPECT_TRUE(is_nfc_quick(text)) << text;
    EXPECT_EQ(nfc(text), text);
  }
  EXPECT_FALSE(is_nfc_quick("e\u0301"));
}

// Hugging Face's NFC data predates some marks (e.g. U+0D3C, Unicode 10): it treats them as starters, and so
// do we.
TEST(NormalizerTest, MarksUnknownToHuggingFaceAreStarters) {
  EXPECT_EQ(nfc("a\u0D3C\u0334"), "a\u0D3C\u0334");
}

}  // namespace
}  // namespace bm::engine
