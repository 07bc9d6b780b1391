#pragma once
// The catalog of supported chat models (DESIGN §4): common/catalog/catalog.tsv, compiled in.
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace bm::common {

enum class Quant { kOrigin, kGptq8, kGptq4, kAwq };

// "origin" | "gptq8" | "gptq4" | "awq" (names use "origin"; the tsv and the original's jsonl say "none").
std::string_view quant_name(Quant quant);
// The value the original printed in its QUANT column and stored as model_quant: "none" for an unquantised model
// (whose name still ends in -origin), else the same as quant_name.
std::string_view original_quant_value(Quant quant);
absl::StatusOr<Quant> parse_quant(std::string_view text);

enum class Hub { kHuggingFace, kModelScope };
std::string_view hub_name(Hub hub);  // "hf" | "ms"
absl::StatusOr<Hub> parse_hub(std::string_view text);

struct CatalogEntry {
  std::string name;  // <series>-<size>b-<quant>
  std::string series;
  std::string modality;  // "T" or "T&I+&V+"
  double size_b = 0;
  Quant quant = Quant::kOrigin;
  std::string tool_call;  // none | hermes
  std::string reasoning;  // none | deepseek-r1
  std::string hf_repo_id;
  std::string ms_repo_id;

  const std::string& repo_id(Hub hub) const;
};

// All entries, in catalog order. Parsed once; a malformed compiled-in table is a build bug (BM_CHECK).
const std::vector<CatalogEntry>& catalog();

// Parses catalog text in the tsv format (a header line, then one entry per line).
absl::StatusOr<std::vector<CatalogEntry>> parse_catalog(std::string_view tsv);

const CatalogEntry* find_catalog_entry(std::string_view name);

// Filters of `chat search/list/update/remove`; empty strings match everything.
struct CatalogFilter {
  std::string pattern;  // fnmatch glob on the name
  std::string series;
  std::string size;  // "7B", "7", "0.5b"
  std::string quant;
};

// Entries matching every filter, in catalog order. INVALID_ARGUMENT for a size or quant that cannot be one.
absl::StatusOr<std::vector<const CatalogEntry*>> search_catalog(const CatalogFilter& filter);

// "7.0B" as the original prints sizes.
std::string format_model_size(double size_b);

}  // namespace bm::common
