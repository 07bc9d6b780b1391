#include "common/catalog/catalog.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace bm::common {
namespace {

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  for (std::string cell; std::getline(in, cell, '\t');) cells.push_back(cell);
  return cells;
}

TEST(Catalog, HasThe68EntriesOfTheOriginal) {
  EXPECT_EQ(catalog().size(), 68u);
  std::set<std::string> names;
  for (const CatalogEntry& entry : catalog()) names.insert(entry.name);
  EXPECT_EQ(names.size(), 68u);
}

// Every compiled-in entry equals the reference table, field by field (read here with a separate parser).
TEST(Catalog, MatchesTheSharedReferenceTable) {
  // BMSERVER_SHARED_MODELS is shared/models: a fallback while only the first variable reaches discovered
  // tests.
  std::string shared;
  if (const char* dir = std::getenv("BMSERVER_SHARED_DIR"))
    shared = dir;
  else if (const char* models = std::getenv("BMSERVER_SHARED_MODELS"))
    shared = std::string(models) + "/..";
  if (shared.empty()) GTEST_SKIP() << "BMSERVER_SHARED_DIR is not set";
  std::ifstream in(shared + "/reference/catalog.tsv");
  if (!in) GTEST_SKIP() << shared << "/reference/catalog.tsv is absent";
  std::string line;
  std::getline(in, line);
  size_t index = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> cells = split_tabs(line);
    ASSERT_EQ(cells.size(), 9u) << line;
    ASSERT_LT(index, catalog().size());
    const CatalogEntry& entry = catalog()[index++];
    EXPECT_EQ(entry.name, cells[0]);
    EXPECT_EQ(entry.series, cells[1]) << cells[0];
    EXPECT_EQ(entry.modality, cells[2]) << cells[0];
    EXPECT_DOUBLE_EQ(entry.size_b, std::stod(cells[3])) << cells[0];
    EXPECT_EQ(quant_name(entry.quant), cells[4] == "none" ? "origin" : cells[4]) << cells[0];
    EXPECT_EQ(original_quant_value(entry.quant), cells[4]) << cells[0];  // the original's QUANT / model_quant
    EXPECT_EQ(entry.tool_call, cells[5]) << cells[0];
    EXPECT_EQ(entry.reasoning, cells[6]) << cells[0];
    EXPECT_EQ(entry.hf_repo_id, cells[7]) << cells[0];
    EXPECT_EQ(entry.ms_repo_id, cells[8]) << cells[0];
  }
  EXPECT_EQ(index, catalog().size());
}

TEST(Catalog, NamesFollowSeriesSizeQuant) {
  for (const CatalogEntry& entry : catalog()) {
    std::string size = format_model_size(entry.size_b);  // "7.0B"
    std::string compact = size.substr(0, size.size() - 1);
    if (compact.size() > 2 && compact.substr(compact.size() - 2) == ".0") compact.resize(compact.size() - 2);
    EXPECT_EQ(entry.name, entry.series + "-" + compact + "b-" + std::string(quant_name(entry.quant)));
  }
}

TEST(Catalog, FindsByExactName) {
  const CatalogEntry* entry = find_catalog_entry("qwq-32b-awq");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->hf_repo_id, "Qwen/QwQ-32B-AWQ");
  EXPECT_EQ(entry->repo_id(Hub::kModelScope), "Qwen/QwQ-32B-AWQ");
  EXPECT_EQ(entry->reasoning, "deepseek-r1");
  EXPECT_EQ(find_catalog_entry("qwq-32b"), nullptr);
}

size_t count(const CatalogFilter& filter) {
  absl::StatusOr<std::vector<const CatalogEntry*>> found = search_catalog(filter);
  EXPECT_TRUE(found.ok()) << found.status();
  return found.ok() ? found->size() : 0;
}

TEST(SearchCatalog, FiltersCombine) {
  EXPECT_EQ(count({}), 68u);
  EXPECT_EQ(count({.pattern = "qwen2.5-7b-*"}), 4u);
  EXPECT_EQ(count({.series = "qwen2.5"}), 28u);
  EXPECT_EQ(count({.series = "qwen2.5-vl"}), 8u);
  EXPECT_EQ(count({.series = "no-such-series"}), 0u);
  EXPECT_EQ(count({.size = "7B"}), 11u);  // qwen2.5 x4, coder x4, vl origin+awq, r1-distill-7b
  EXPECT_EQ(count({.size = "7"}), count({.size = "7b"}));
  EXPECT_EQ(count({.size = "0.5b"}), 8u);
  EXPECT_EQ(count({.quant = "awq"}), 18u);
  EXPECT_EQ(count({.quant = "origin"}), 24u);
  EXPECT_EQ(count({.quant = "none"}), 24u);
  EXPECT_EQ(count({.pattern = "qwq-*", .quant = "awq"}), 1u);
  EXPECT_EQ(count({.pattern = "nothing*"}), 0u);
}

TEST(SearchCatalog, RejectsSizesAndQuantsThatCannotBe) {
  EXPECT_EQ(search_catalog({.size = "big"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(search_catalog({.size = "-7B"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(search_catalog({.quant = "int8"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(search_catalog({.quant = "int8"}).status().message().find("int8"), std::string::npos);
}

TEST(ParseCatalog, NamesTheBadLine) {
  std::string header = "name\tseries\tmodality\tsize_b\tquant\ttool_call\treasoning\thf_repo_id\tms_repo_id\n";
  EXPECT_TRUE(parse_catalog(header + "a-1b-origin\ta\tT\t1\tnone\tnone\tnone\to/a\to/a\n").ok());
  absl::Status bad = parse_catalog(header + "a\ta\tT\t1\tnone\n").status();
  EXPECT_NE(bad.message().find("line 2"), std::string::npos) << bad;
  EXPECT_FALSE(parse_catalog(header + "a\ta\tT\tx\tnone\tnone\tnone\to/a\to/a\n").ok());
  EXPECT_FALSE(parse_catalog(header + "a\ta\tT\t1\tfp8\tnone\tnone\to/a\to/a\n").ok());
  EXPECT_FALSE(parse_catalog(header + "a\ta\tT\t1\tnone\tnone\tnone\tnoslash\to/a\n").ok());
  EXPECT_FALSE(parse_catalog("bad header\n").ok());
  std::string line = "a\ta\tT\t1\tnone\tnone\tnone\to/a\to/a\n";
  EXPECT_FALSE(parse_catalog(header + line + line).ok());
}

TEST(FormatModelSize, PrintsOneDecimalAndB) {
  EXPECT_EQ(format_model_size(0.5), "0.5B");
  EXPECT_EQ(format_model_size(7), "7.0B");
  EXPECT_EQ(format_model_size(72), "72.0B");
}

TEST(Hub, ParsesHfAndMs) {
  EXPECT_EQ(*parse_hub("hf"), Hub::kHuggingFace);
  EXPECT_EQ(hub_name(*parse_hub("ms")), "ms");
  EXPECT_FALSE(parse_hub("github").ok());
}

}  // namespace
}  // namespace bm::common
