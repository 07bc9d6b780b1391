#include "common/catalog/catalog.h"

#include <cmath>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/check.h"
#include "common/store/glob_match.h"

namespace bm::common {
namespace {

constexpr std::string_view kCatalogTsv =
#include "common/catalog/catalog_data.inc"
    ;

constexpr std::string_view kHeader =
    "name\tseries\tmodality\tsize_b\tquant\ttool_call\treasoning\thf_repo_id\tms_repo_id";

absl::StatusOr<CatalogEntry> parse_line(const std::string& line, int line_number) {
  std::vector<std::string> cells = absl::StrSplit(line, '\t');
  if (cells.size() != 9)
    return absl::InvalidArgumentError(
        absl::StrCat("catalog line ", line_number, " has ", cells.size(), " columns, expected 9"));
  CatalogEntry entry;
  entry.name = std::string(cells[0]);
  entry.series = std::string(cells[1]);
  entry.modality = std::string(cells[2]);
  if (!absl::SimpleAtod(cells[3], &entry.size_b) || !(entry.size_b > 0))
    return absl::InvalidArgumentError(absl::StrCat("catalog line ", line_number, " has size '", cells[3], "'"));
  absl::StatusOr<Quant> quant = parse_quant(cells[4]);
  if (!quant.ok())
    return absl::InvalidArgumentError(absl::StrCat("catalog line ", line_number, ": ", quant.status().message()));
  entry.quant = *quant;
  entry.tool_call = std::string(cells[5]);
  entry.reasoning = std::string(cells[6]);
  entry.hf_repo_id = std::string(cells[7]);
  entry.ms_repo_id = std::string(cells[8]);
  for (const std::string& id : {cells[7], cells[8]}) {
    std::vector<std::string> parts = absl::StrSplit(id, '/');
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty())
      return absl::InvalidArgumentError(
          absl::StrCat("catalog line ", line_number, " has repo id '", id, "', expected org/name"));
  }
  return entry;
}

// "7B", "7", "0.5b" -> billions.
absl::StatusOr<double> parse_size_filter(const std::string& text) {
  std::string number = text;
  if (!number.empty() && (number.back() == 'b' || number.back() == 'B')) number.pop_back();
  double value = 0;
  if (!absl::SimpleAtod(number, &value) || !(value > 0))
    return absl::InvalidArgumentError(
        absl::StrCat("size '", text, "' is not a model size; write it like 7B, 0.5b or 14"));
  return value;
}

}  // namespace

std::string_view quant_name(Quant quant) {
  switch (quant) {
    case Quant::kOrigin:
      return "origin";
    case Quant::kGptq8:
      return "gptq8";
    case Quant::kGptq4:
      return "gptq4";
    case Quant::kAwq:
      return "awq";
  }
  BM_CHECK(false);
}

std::string_view original_quant_value(Quant quant) {
  return quant == Quant::kOrigin ? "none" : quant_name(quant);
}

absl::StatusOr<Quant> parse_quant(std::string_view text) {
  if (text == "origin" || text == "none") return Quant::kOrigin;
  if (text == "gptq8") return Quant::kGptq8;
  if (text == "gptq4") return Quant::kGptq4;
  if (text == "awq") return Quant::kAwq;
  return absl::InvalidArgumentError(
      absl::StrCat("quant '", std::string(text), "' is not one of origin, gptq8, gptq4, awq"));
}

std::string_view hub_name(Hub hub) {
  switch (hub) {
    case Hub::kHuggingFace:
      return "hf";
    case Hub::kModelScope:
      return "ms";
  }
  BM_CHECK(false);
}

absl::StatusOr<Hub> parse_hub(std::string_view text) {
  if (text == "hf") return Hub::kHuggingFace;
  if (text == "ms") return Hub::kModelScope;
  return absl::InvalidArgumentError(absl::StrCat("hub '", std::string(text), "' is not one of hf, ms"));
}

const std::string& CatalogEntry::repo_id(Hub hub) const {
  switch (hub) {
    case Hub::kHuggingFace:
      return hf_repo_id;
    case Hub::kModelScope:
      return ms_repo_id;
  }
  BM_CHECK(false);
}

absl::StatusOr<std::vector<CatalogEntry>> parse_catalog(std::string_view tsv) {
  std::vector<std::string> lines = absl::StrSplit(absl::string_view(tsv.data(), tsv.size()), '\n');
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  for (std::string& line : lines) absl::StripTrailingAsciiWhitespace(&line);
  if (lines.empty() || lines[0] != kHeader)
    return absl::InvalidArgumentError(absl::StrCat("catalog header is not '", std::string(kHeader), "'"));
  std::vector<CatalogEntry> entries;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::StatusOr<CatalogEntry> entry = parse_line(lines[i], static_cast<int>(i + 1));
    if (!entry.ok()) return entry.status();
    for (const CatalogEntry& seen : entries)
      if (seen.name == entry->name)
        return absl::InvalidArgumentError(absl::StrCat("catalog names '", seen.name, "' twice"));
    entries.push_back(*std::move(entry));
  }
  return entries;
}

const std::vector<CatalogEntry>& catalog() {
  static const std::vector<CatalogEntry> entries = [] {
    absl::StatusOr<std::vector<CatalogEntry>> parsed = parse_catalog(kCatalogTsv);
    BM_CHECK(parsed.ok());
    return *std::move(parsed);
  }();
  return entries;
}

const CatalogEntry* find_catalog_entry(std::string_view name) {
  for (const CatalogEntry& entry : catalog())
    if (entry.name == name) return &entry;
  return nullptr;
}

absl::StatusOr<std::vector<const CatalogEntry*>> search_catalog(const CatalogFilter& filter) {
  double size = 0;
  if (!filter.size.empty()) {
    absl::StatusOr<double> parsed = parse_size_filter(filter.size);
    if (!parsed.ok()) return parsed.status();
    size = *parsed;
  }
  Quant quant = Quant::kOrigin;
  if (!filter.quant.empty()) {
    absl::StatusOr<Quant> parsed = parse_quant(filter.quant);
    if (!parsed.ok()) return parsed.status();
    quant = *parsed;
  }
  std::vector<const CatalogEntry*> out;
  for (const CatalogEntry& entry : catalog()) {
    if (!filter.pattern.empty() && !glob_match(filter.pattern, entry.name)) continue;
    if (!filter.series.empty() && entry.series != filter.series) continue;
    if (!filter.size.empty() && std::fabs(entry.size_b - size) > 1e-6) continue;
    if (!filter.quant.empty() && entry.quant != quant) continue;
    out.push_back(&entry);
  }
  return out;
}

std::string format_model_size(double size_b) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1fB", size_b);
  return out;
}

}  // namespace bm::common
