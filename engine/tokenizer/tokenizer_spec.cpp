#include "engine/tokenizer/tokenizer_spec.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

absl::StatusOr<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::StatusOr<json> read_json(const fs::path& path) {
  absl::StatusOr<std::string> text = read_file(path);
  if (!text.ok()) return text.status();
  json parsed = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path.string(), " is not valid JSON"));
  return parsed;
}

std::string type_of(const json& node) {
  return node.is_object() && node.contains("type") && node["type"].is_string() ? node["type"].get<std::string>()
                                                                               : std::string("<none>");
}

bool flag(const json& node, const char* key, bool fallback) {
  auto it = node.find(key);
  return it != node.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// bos_token / eos_token in tokenizer_config.json: a string, an AddedToken object, or null.
std::optional<std::string> token_text(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

absl::StatusOr<AddedToken> parse_added_token(const json& node, int32_t id, const std::string& where) {
  if (!node.is_object() || !node.contains("content") || !node["content"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": added token ", id, " has no string 'content'"));
  }
  AddedToken token;
  token.id = id;
  token.content = node["content"].get<std::string>();
  token.lstrip = flag(node, "lstrip", false);
  token.rstrip = flag(node, "rstrip", false);
  token.single_word = flag(node, "single_word", false);
  token.special = flag(node, "special", false);
  token.normalized = flag(node, "normalized", !token.special);
  return token;
}

absl::Status unsupported(const fs::path& file, const std::string& what, const std::string& type) {
  return absl::UnimplementedError(absl::StrCat(file.string(), ": ", what, " '", type,
                                               "' is not supported (only the byte-level BPE tokenizers of the "
                                               "Qwen2 and Llama-3 families are)"));
}

absl::Status read_normalizer(const json& node, const fs::path& file, TokenizerSpec& spec) {
  if (node.is_null()) return absl::OkStatus();
  const std::string type = type_of(node);
  if (type == "NFC") {
    spec.nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence" && node.contains("normalizers") && node["normalizers"].is_array()) {
    for (const json& part : node["normalizers"]) {
      if (absl::Status s = read_normalizer(part, file, spec); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  return unsupported(file, "normalizer", type);
}

absl::Status read_byte_level(const json& node, const fs::path& file) {
  if (flag(node, "add_prefix_space", false)) return unsupported(file, "ByteLevel option", "add_prefix_space=true");
  if (flag(node, "use_regex", true)) return unsupported(file, "ByteLevel option", "use_regex=true (GPT-2 split)");
  return absl::OkStatus();
}

absl::Status read_pre_tokenizer(const json& node, const fs::path& file, TokenizerSpec& spec) {
  const std::string type = type_of(node);
  if (type != "Sequence" || !node.contains("pretokenizers") || !node["pretokenizers"].is_array() ||
      node["pretokenizers"].size() != 2) {
    return unsupported(file, "pre_tokenizer", type);
  }
  const json& split = node["pretokenizers"][0];
  const json& byte_level = node["pretokenizers"][1];
  if (type_of(split) != "Split") return unsupported(file, "pre_tokenizer step", type_of(split));
  if (type_of(byte_level) != "ByteLevel") return unsupported(file, "pre_tokenizer step", type_of(byte_level));
  const json pattern = split.value("pattern", json::object());
  const std::string regex = pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()
                                ? pattern["Regex"].get<std::string>()
                                : std::string("<not a regex>");
  std::optional<SplitPattern> known = split_pattern_from_regex(regex);
  if (!known) return unsupported(file, "split regex", regex);
  if (split.value("behavior", "") != "Isolated" || flag(split, "invert", false)) {
    return unsupported(file, "split behavior", split.value("behavior", std::string("<none>")));
  }
  spec.split_pattern = *known;
  return read_byte_level(byte_level, file);
}

// TemplateProcessing "single": special tokens before and after the sequence $A.
absl::Status read_template(const json& node, const fs::path& file, TokenizerSpec& spec) {
  const json& single = node.value("single", json::array());
  const json& specials = node.value("special_tokens", json::object());
  bool after = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      after = true;
      continue;
    }
    if (!item.contains("SpecialToken")) return unsupported(file, "TemplateProcessing item", item.dump());
    const std::string name = item["SpecialToken"].value("id", "");
    if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": TemplateProcessing names special token '", name, "' without ids"));
    }
    for (const json& id : specials[name]["ids"]) {
      if (!id.is_number_integer())
        return absl::InvalidArgumentError(absl::StrCat(file.string(), ": bad id for ", name));
      (after ? spec.suffix_ids : spec.prefix_ids).push_back(id.get<int32_t>());
    }
  }
  return absl::OkStatus();
}

absl::Status read_post_processor(const json& node, const fs::path& file, TokenizerSpec& spec) {
  if (node.is_null()) return absl::OkStatus();
  const std::string type = type_of(node);
  if (type == "ByteLevel") return absl::OkStatus();  // only moves offsets
  if (type == "TemplateProcessing") return read_template(node, file, spec);
  if (type == "Sequence" && node.contains("processors") && node["processors"].is_array()) {
    for (const json& part : node["processors"]) {
      if (absl::Status s = read_post_processor(part, file, spec); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  return unsupported(file, "post_processor", type);
}

absl::Status read_merge_list(const json& merges, const fs::path& file, TokenizerSpec& spec) {
  spec.merges.reserve(merges.size());
  for (const json& merge : merges) {
    if (merge.is_string()) {
      const std::string& text = merge.get_ref<const std::string&>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(file.string(), ": merge '", text, "' is not 'left right'"));
      }
      spec.merges.emplace_back(text.substr(0, space), text.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      spec.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(file.string(), ": malformed merge ", merge.dump()));
    }
  }
  return absl::OkStatus();
}

absl::Status read_vocab(const json& vocab, const fs::path& file, TokenizerSpec& spec) {
  if (!vocab.is_object()) return absl::InvalidArgumentError(absl::StrCat(file.string(), ": vocab is not an object"));
  spec.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(file.string(), ": token '", token, "' has no integer id"));
    }
    spec.vocab.emplace_back(token, id.get<int32_t>());
  }
  return absl::OkStatus();
}

absl::Status read_model(const json& model, const fs::path& file, TokenizerSpec& spec) {
  const std::string type = model.is_object() && model.contains("type") ? type_of(model) : std::string("BPE");
  if (type != "BPE") return unsupported(file, "model type", type);
  if (flag(model, "byte_fallback", false)) return unsupported(file, "BPE option", "byte_fallback=true");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      return unsupported(file, "BPE option", key);
    }
  }
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0.0) {
    return unsupported(file, "BPE option", "dropout");
  }
  spec.ignore_merges = flag(model, "ignore_merges", false);
  if (!model.contains("vocab") || !model.contains("merges") || !model["merges"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(file.string(), ": model has no vocab or merges"));
  }
  if (absl::Status s = read_vocab(model["vocab"], file, spec); !s.ok()) return s;
  return read_merge_list(model["merges"], file, spec);
}

absl::Status read_added_token_list(const json& list, const fs::path& file, TokenizerSpec& spec) {
  if (list.is_null()) return absl::OkStatus();
  if (!list.is_array()) return absl::InvalidArgumentError(absl::StrCat(file.string(), ": added_tokens is not a list"));
  for (const json& node : list) {
    if (!node.contains("id") || !node["id"].is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat(file.string(), ": an added token has no integer id"));
    }
    absl::StatusOr<AddedToken> token = parse_added_token(node, node["id"].get<int32_t>(), file.string());
    if (!token.ok()) return token.status();
    spec.added_tokens.push_back(*std::move(token));
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerSpec> read_tokenizer_json(const fs::path& file) {
  absl::StatusOr<json> root = read_json(file);
  if (!root.ok()) return root.status();
  TokenizerSpec spec;
  const json null_node;
  auto field = [&](const char* key) -> const json& { return root->contains(key) ? (*root)[key] : null_node; };
  if (absl::Status s = read_model(field("model"), file, spec); !s.ok()) return s;
  if (absl::Status s = read_normalizer(field("normalizer"), file, spec); !s.ok()) return s;
  if (absl::Status s = read_pre_tokenizer(field("pre_tokenizer"), file, spec); !s.ok()) return s;
  if (absl::Status s = read_post_processor(field("post_processor"), file, spec); !s.ok()) return s;
  if (type_of(field("decoder")) != "ByteLevel") return unsupported(file, "decoder", type_of(field("decoder")));
  if (absl::Status s = read_added_token_list(field("added_tokens"), file, spec); !s.ok()) return s;
  return spec;
}

// merges.txt: one "left right" pair per line, optionally after a "#version" header.
absl::Status read_merges_txt(const fs::path& file, TokenizerSpec& spec) {
  absl::StatusOr<std::string> text = read_file(file);
  if (!text.ok()) return text.status();
  std::istringstream lines(*text);
  std::string line;
  size_t line_number = 0;
  while (std::getline(lines, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(file.string(), ":", line_number, ": not a 'left right' merge"));
    }
    spec.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return absl::OkStatus();
}

std::optional<int32_t> find_id(const TokenizerSpec& spec, const std::string& token) {
  for (const AddedToken& added : spec.added_tokens) {
    if (added.content == token) return added.id;
  }
  for (const auto& [text, id] : spec.vocab) {
    if (text == token) return id;
  }
  return std::nullopt;
}

absl::StatusOr<TokenizerSpec> read_vocab_files(const fs::path& dir, const json& config) {
  const fs::path config_file = dir / "tokenizer_config.json";
  const std::string cls = config.value("tokenizer_class", std::string("<none>"));
  if (cls != "Qwen2Tokenizer" && cls != "Qwen2TokenizerFast") {
    return unsupported(config_file, "tokenizer_class (without tokenizer.json)", cls);
  }
  TokenizerSpec spec;
  spec.nfc = true;
  spec.split_pattern = SplitPattern::kQwen2;
  absl::StatusOr<json> vocab = read_json(dir / "vocab.json");
  if (!vocab.ok()) return vocab.status();
  if (absl::Status s = read_vocab(*vocab, dir / "vocab.json", spec); !s.ok()) return s;
  if (absl::Status s = read_merges_txt(dir / "merges.txt", spec); !s.ok()) return s;
  if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object()) {
    for (const auto& [key, node] : config["added_tokens_decoder"].items()) {
      int32_t id = 0;
      try {
        id = std::stoi(key);
      } catch (const std::exception&) {
        return absl::InvalidArgumentError(
            absl::StrCat(config_file.string(), ": added token key '", key, "' is not an id"));
      }
      absl::StatusOr<AddedToken> token = parse_added_token(node, id, config_file.string());
      if (!token.ok()) return token.status();
      spec.added_tokens.push_back(*std::move(token));
    }
  }
  const std::optional<std::string> bos = token_text(config, "bos_token");
  const std::optional<std::string> eos = token_text(config, "eos_token");
  for (const auto& [key, token, ids] :
       {std::tuple("add_bos_token", bos, &spec.prefix_ids), std::tuple("add_eos_token", eos, &spec.suffix_ids)}) {
    if (!flag(config, key, false)) continue;
    std::optional<int32_t> id = token ? find_id(spec, *token) : std::nullopt;
    if (!id) {
      return absl::InvalidArgumentError(absl::StrCat(config_file.string(), " sets ", key, " but its token '",
                                                     token.value_or("null"), "' is not in the vocabulary"));
    }
    ids->push_back(*id);
  }
  return spec;
}

}  // namespace

absl::StatusOr<TokenizerSpec> read_tokenizer_spec(const fs::path& model_dir) {
  const fs::path config_file = model_dir / "tokenizer_config.json";
  json config = json::object();
  if (fs::exists(config_file)) {
    absl::StatusOr<json> parsed = read_json(config_file);
    if (!parsed.ok()) return parsed.status();
    if (!parsed->is_object())
      return absl::InvalidArgumentError(absl::StrCat(config_file.string(), " is not an object"));
    config = *std::move(parsed);
  }
  absl::StatusOr<TokenizerSpec> spec;
  if (fs::exists(model_dir / "tokenizer.json")) {
    spec = read_tokenizer_json(model_dir / "tokenizer.json");
  } else if (fs::exists(model_dir / "vocab.json") && fs::exists(model_dir / "merges.txt")) {
    if (!fs::exists(config_file)) {
      return absl::NotFoundError(absl::StrCat(model_dir.string(),
                                              " has vocab.json and merges.txt but no tokenizer_config.json to say "
                                              "which tokenizer they belong to"));
    }
    spec = read_vocab_files(model_dir, config);
  } else {
    return absl::NotFoundError(
        absl::StrCat(model_dir.string(), " has neither tokenizer.json nor vocab.json + merges.txt"));
  }
  if (!spec.ok()) return spec.status();
  spec->bos_token = token_text(config, "bos_token");
  spec->eos_token = token_text(config, "eos_token");
  return spec;
}

}  // namespace bm::engine
