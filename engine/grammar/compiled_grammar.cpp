#include "engine/grammar/compiled_grammar.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "engine/grammar/unicode_ranges.h"

namespace bm::engine::grammar {
namespace {

// Masks are kept for this many configurations of one grammar; beyond it they are computed and not stored, so a
// grammar that keeps producing new states (deep recursion, long counted strings) cannot grow without bound.
constexpr int32_t kMaxCachedMasks = 4096;

void mark(std::vector<uint64_t>& bits, int32_t id) {
  bits[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63);
}

}  // namespace

bool TokenSet::allows(int32_t id) const {
  return std::binary_search(ids.begin(), ids.end(), id) != rejected;
}

void TokenSet::apply(std::span<float> logits) const {
  constexpr float kMasked = -std::numeric_limits<float>::infinity();
  if (rejected) {
    for (int32_t id : ids) logits[static_cast<size_t>(id)] = kMasked;
    if (logits.size() > static_cast<size_t>(vocab_size)) std::fill(logits.begin() + vocab_size, logits.end(), kMasked);
    return;
  }
  // Few allowed: keep their values, mask the whole row, put them back.
  std::vector<float> kept(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) kept[i] = logits[static_cast<size_t>(ids[i])];
  std::fill(logits.begin(), logits.end(), kMasked);
  for (size_t i = 0; i < ids.size(); ++i) logits[static_cast<size_t>(ids[i])] = kept[i];
}

void TokenSet::fill_bitmask(std::span<uint32_t> words) const {
  std::fill(words.begin(), words.end(), 0);
  if (rejected) {
    // Whole words first: the engine fills a mask per constrained row per step (152k ids a row on Qwen).
    const size_t full = std::min(words.size(), static_cast<size_t>(vocab_size) / 32);
    std::fill(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(full), ~uint32_t{0});
    for (int32_t id = static_cast<int32_t>(full * 32); id < vocab_size && static_cast<size_t>(id) / 32 < words.size();
         ++id)
      words[static_cast<size_t>(id) / 32] |= uint32_t{1} << (id % 32);
  }
  for (int32_t id : ids) {
    uint32_t& w = words[static_cast<size_t>(id) / 32];
    const uint32_t bit = uint32_t{1} << (id % 32);
    w = rejected ? (w & ~bit) : (w | bit);
  }
}

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::compile(
    const Grammar& grammar, std::shared_ptr<const TokenVocabulary> vocabulary, const CompileLimits& limits) {
  std::shared_ptr<CompiledGrammar> g(new CompiledGrammar());
  g->vocabulary_ = std::move(vocabulary);
  if (absl::Status s = g->build(grammar, limits); !s.ok()) return s;
  return std::shared_ptr<const CompiledGrammar>(std::move(g));
}

int32_t CompiledGrammar::new_state() {
  states_.emplace_back();
  final_of_rule_.push_back(-1);
  return static_cast<int32_t>(states_.size()) - 1;
}

absl::Status CompiledGrammar::build(const Grammar& grammar, const CompileLimits& limits) {
  if (grammar.root() < 0) return absl::InvalidArgumentError("the grammar has no root rule");
  for (int32_t r = 0; r < grammar.num_rules(); ++r)
    if (grammar.rule_body(r) < 0)
      return absl::InvalidArgumentError(absl::StrCat("rule '", grammar.rule_name(r), "' is used but never defined"));
  root_rule_ = grammar.root();
  rule_start_.resize(static_cast<size_t>(grammar.num_rules()));
  for (int32_t r = 0; r < grammar.num_rules(); ++r) rule_start_[r] = new_state();
  for (int32_t r = 0; r < grammar.num_rules(); ++r) {
    absl::StatusOr<int32_t> end = compile_expr(grammar, grammar.rule_body(r), rule_start_[r], limits);
    if (!end.ok()) return end.status();
    // A state that ends a rule has no edges of its own, so "ends rule r" is unambiguous.
    const int32_t final_state = new_state();
    states_[*end].push_back({EdgeKind::kEmpty, final_state, 0});
    final_of_rule_[final_state] = r;
  }
  if (absl::Status s = check_left_recursion(grammar); !s.ok()) return s;
  configs_.emplace_back();  // kDead
  std::vector<int32_t> seeds = {frame(-1, rule_start_[root_rule_])};
  start_ = close(seeds);
  return absl::OkStatus();
}

absl::StatusOr<int32_t> CompiledGrammar::compile_expr(const Grammar& grammar, int32_t id, int32_t from,
                                                      const CompileLimits& limits) {
  if (num_states() > limits.max_states)
    return absl::InvalidArgumentError(
        absl::StrCat("the grammar is too large: it expands to more than ", limits.max_states, " automaton states"));
  const Expr& e = grammar.expr(id);
  switch (e.kind) {
    case ExprKind::kBytes: {
      auto it = std::find(classes_.begin(), classes_.end(), e.bytes);
      const int32_t cls = static_cast<int32_t>(it - classes_.begin());
      if (it == classes_.end()) classes_.push_back(e.bytes);
      const int32_t to = new_state();
      states_[from].push_back({EdgeKind::kBytes, to, cls});
      return to;
    }
    case ExprKind::kSequence: {
      int32_t at = from;
      for (int32_t child : e.children) {
        absl::StatusOr<int32_t> next = compile_expr(grammar, child, at, limits);
        if (!next.ok()) return next;
        at = *next;
      }
      return at;
    }
    case ExprKind::kChoice: {
      const int32_t to = new_state();
      for (int32_t child : e.children) {
        const int32_t begin = new_state();
        states_[from].push_back({EdgeKind::kEmpty, begin, 0});
        absl::StatusOr<int32_t> end = compile_expr(grammar, child, begin, limits);
        if (!end.ok()) return end;
        states_[*end].push_back({EdgeKind::kEmpty, to, 0});
      }
      return to;
    }
    case ExprKind::kRepeat: {
      int32_t at = from;
      for (int32_t i = 0; i < e.min; ++i) {
        absl::StatusOr<int32_t> next = compile_expr(grammar, e.children[0], at, limits);
        if (!next.ok()) return next;
        at = *next;
      }
      const int32_t to = new_state();
      if (e.max == Grammar::kUnbounded) {
        const int32_t loop = new_state();
        states_[at].push_back({EdgeKind::kEmpty, loop, 0});
        absl::StatusOr<int32_t> end = compile_expr(grammar, e.children[0], loop, limits);
        if (!end.ok()) return end;
        states_[*end].push_back({EdgeKind::kEmpty, loop, 0});
        states_[loop].push_back({EdgeKind::kEmpty, to, 0});
        return to;
      }
      for (int32_t i = e.min; i < e.max; ++i) {
        states_[at].push_back({EdgeKind::kEmpty, to, 0});
        absl::StatusOr<int32_t> next = compile_expr(grammar, e.children[0], at, limits);
        if (!next.ok()) return next;
        at = *next;
      }
      states_[at].push_back({EdgeKind::kEmpty, to, 0});
      return to;
    }
    case ExprKind::kRule: {
      const int32_t to = new_state();
      states_[from].push_back({EdgeKind::kCall, to, e.rule});
      return to;
    }
  }
  return from;
}

// A rule that can call itself before reading a byte would push frames forever; such grammars are refused.
// Linear in the automaton's size however the rules are ordered (a grammar is input: its size is bounded, and
// nothing here may be quadratic in it or recurse as deep as it is long).
absl::Status CompiledGrammar::check_left_recursion(const Grammar& grammar) const {
  const int32_t num_rules = grammar.num_rules();
  std::vector<char> nullable(static_cast<size_t>(num_rules), 0);
  std::vector<int32_t> seen(states_.size(), -1);  // the walk that last saw the state
  int32_t walk_id = 0;
  // The states a rule reaches from its start without reading a byte (through nullable callees); whether that
  // reaches its end; the callees met on the way, and those that blocked it (not known nullable yet).
  auto walk = [&](int32_t rule, std::vector<int32_t>* left_calls, std::vector<int32_t>* blocked) {
    const int32_t id = walk_id++;
    std::vector<int32_t> todo = {rule_start_[rule]};
    bool ends = false;
    while (!todo.empty()) {
      const int32_t s = todo.back();
      todo.pop_back();
      if (seen[s] == id) continue;
      seen[s] = id;
      if (final_of_rule_[s] == rule) ends = true;
      for (const Edge& edge : states_[s]) {
        if (edge.kind == EdgeKind::kEmpty) todo.push_back(edge.target);
        if (edge.kind == EdgeKind::kCall) {
          if (left_calls) left_calls->push_back(edge.arg);
          if (nullable[edge.arg])
            todo.push_back(edge.target);
          else if (blocked)
            blocked->push_back(edge.arg);
        }
      }
    }
    return ends;
  };
  // Nullable rules by a work list: a rule is walked again only when a callee that blocked it becomes nullable.
  std::vector<std::vector<int32_t>> waiting(static_cast<size_t>(num_rules));  // callee -> rules it blocked
  std::vector<int32_t> todo(static_cast<size_t>(num_rules));
  for (int32_t r = 0; r < num_rules; ++r) todo[r] = r;
  while (!todo.empty()) {
    const int32_t r = todo.back();
    todo.pop_back();
    if (nullable[r]) continue;
    std::vector<int32_t> blocked;
    if (walk(r, nullptr, &blocked)) {
      nullable[r] = 1;
      todo.insert(todo.end(), waiting[r].begin(), waiting[r].end());
      waiting[r].clear();
    } else {
      for (int32_t callee : blocked) waiting[callee].push_back(r);
    }
  }
  std::vector<std::vector<int32_t>> left(static_cast<size_t>(num_rules));
  for (int32_t r = 0; r < num_rules; ++r) walk(r, &left[r], nullptr);
  // A cycle in the left-call graph, by an iterative depth-first search.
  std::vector<int> color(static_cast<size_t>(num_rules), 0);
  for (int32_t root = 0; root < num_rules; ++root) {
    if (color[root] != 0) continue;
    std::vector<std::pair<int32_t, size_t>> stack = {{root, 0}};  // rule, next callee to visit
    color[root] = 1;
    while (!stack.empty()) {
      auto& [r, next] = stack.back();
      if (next == left[r].size()) {
        color[r] = 2;
        stack.pop_back();
        continue;
      }
      const int32_t callee = left[r][next++];
      if (color[callee] == 1) {
        std::vector<std::string> names;
        bool on_cycle = false;
        for (const auto& [rule, unused] : stack) {
          on_cycle = on_cycle || rule == callee;
          if (on_cycle) names.push_back(grammar.rule_name(rule));
        }
        names.push_back(grammar.rule_name(callee));
        return absl::InvalidArgumentError(absl::StrCat("the grammar is left-recursive (", absl::StrJoin(names, " -> "),
                                                       " before reading any text); write the repetition with * or +"));
      }
      if (color[callee] == 0) {
        color[callee] = 1;
        stack.emplace_back(callee, 0);
      }
    }
  }
  return absl::OkStatus();
}

int32_t CompiledGrammar::frame(int32_t parent, int32_t state) const {
  const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(parent)) << 32) | static_cast<uint32_t>(state);
  auto [it, inserted] = frame_ids_.try_emplace(key, static_cast<int32_t>(frames_.size()));
  if (inserted) frames_.emplace_back(parent, state);
  return it->second;
}

// The configuration reached from `seeds` by empty moves, calls and returns; `seeds` is used as the work list.
int32_t CompiledGrammar::close(std::vector<int32_t>& seeds) const {
  if (++stamp_ == 0) {
    std::fill(visit_stamp_.begin(), visit_stamp_.end(), 0);
    stamp_ = 1;
  }
  std::vector<int32_t> reading;
  bool accepting = false;
  while (!seeds.empty()) {
    const int32_t f = seeds.back();
    seeds.pop_back();
    if (static_cast<size_t>(f) >= visit_stamp_.size()) visit_stamp_.resize(frames_.size() * 2 + 64, 0);
    if (visit_stamp_[f] == stamp_) continue;
    visit_stamp_[f] = stamp_;
    const auto [parent, state] = frames_[f];
    bool reads = false;
    for (const Edge& edge : states_[state]) {
      switch (edge.kind) {
        case EdgeKind::kEmpty:
          seeds.push_back(frame(parent, edge.target));
          break;
        case EdgeKind::kCall:
          seeds.push_back(frame(frame(parent, edge.target), rule_start_[edge.arg]));
          break;
        case EdgeKind::kBytes:
          reads = true;
          break;
      }
    }
    if (final_of_rule_[state] >= 0) {
      if (parent < 0)
        accepting = accepting || final_of_rule_[state] == root_rule_;
      else
        seeds.push_back(parent);  // return: the parent frame holds the caller's next state
    }
    if (reads) reading.push_back(f);
  }
  if (reading.empty() && !accepting) return kDead;
  std::sort(reading.begin(), reading.end());
  std::string key(reinterpret_cast<const char*>(reading.data()), reading.size() * sizeof(int32_t));
  key += accepting ? '1' : '0';
  auto [it, inserted] = config_ids_.try_emplace(std::move(key), static_cast<int32_t>(configs_.size()));
  if (inserted) {
    configs_.emplace_back();
    configs_.back().frames = std::move(reading);
    configs_.back().accepting = accepting;
  }
  return it->second;
}

int32_t CompiledGrammar::advance_locked(int32_t config, uint8_t byte) const {
  if (config == kDead) return kDead;
  {
    Config& c = configs_[config];
    if (c.next && (*c.next)[byte] >= 0) return (*c.next)[byte];
  }
  // The bytes that no edge of the configuration tells from `byte` lead where it does: they get the same entry, so
  // a class of bytes costs one closure (a string's 64 continuation bytes, its 94 plain ones).
  std::vector<int32_t> seeds;
  std::array<uint64_t, 4> alike = {~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}, ~uint64_t{0}};
  for (int32_t f : configs_[config].frames) {
    const auto [parent, state] = frames_[f];
    for (const Edge& edge : states_[state]) {
      if (edge.kind != EdgeKind::kBytes) continue;
      const ByteClass& cls = classes_[edge.arg];
      const bool has = cls.has(byte);
      for (int w = 0; w < 4; ++w) alike[w] &= has ? cls.bits[w] : ~cls.bits[w];
      if (has) seeds.push_back(frame(parent, edge.target));
    }
  }
  const int32_t next = seeds.empty() ? kDead : close(seeds);
  Config& c = configs_[config];  // close() may have grown configs_
  if (!c.next) {
    c.next = std::make_unique<std::array<int32_t, 256>>();
    c.next->fill(-1);
  }
  for (int w = 0; w < 4; ++w)
    for (uint64_t bits = alike[w]; bits != 0; bits &= bits - 1) (*c.next)[w * 64 + std::countr_zero(bits)] = next;
  return next;
}

int32_t CompiledGrammar::advance(int32_t config, uint8_t byte) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return advance_locked(config, byte);
}

int32_t CompiledGrammar::advance(int32_t config, std::string_view bytes) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (char ch : bytes) config = advance_locked(config, static_cast<uint8_t>(ch));
  return config;
}

bool CompiledGrammar::is_accepting(int32_t config) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return configs_[config].accepting;
}

bool CompiledGrammar::can_continue(int32_t config) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !configs_[config].frames.empty();
}

int32_t CompiledGrammar::num_configs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int32_t>(configs_.size());
}

int32_t CompiledGrammar::num_cached_masks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return num_cached_masks_;
}

CompiledGrammar::MaskCounts CompiledGrammar::mask_counts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return mask_counts_;
}

std::shared_ptr<const TokenSet> CompiledGrammar::allowed_tokens(int32_t config) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (configs_[config].mask) return configs_[config].mask;
  std::shared_ptr<const TokenSet> mask = compute_mask(config, &mask_counts_);
  if (num_cached_masks_ < kMaxCachedMasks) {
    configs_[config].mask = mask;
    ++num_cached_masks_;
  }
  return mask;
}

std::shared_ptr<const TokenSet> CompiledGrammar::allowed_tokens_by_full_walk(int32_t config) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return compute_mask(config, /*counts=*/nullptr);
}

// One walk of the vocabulary trie: a node's configuration is its parent's advanced by the node's byte, and a dead
// one skips the subtree (no token with that prefix can come next). Inside strings and counted repetitions almost
// nothing dies before the count runs out, and the walk visits most of the trie's nodes (1-11 ms on Qwen2.5);
// walk_by_length settles the text nodes (plain ones: 60% of them; with whole UTF-8 characters: 97%) by length.
std::shared_ptr<const TokenSet> CompiledGrammar::compute_mask(int32_t config, MaskCounts* counts) const {
  const TokenVocabulary& v = *vocabulary_;
  // A bit per id: the whole set fits in the L1 cache (19 KB on Qwen2.5), and counting and listing it go a word
  // at a time, which matters to masks that allow few tokens (structure, literals).
  std::vector<uint64_t> allowed((static_cast<size_t>(v.vocab_size()) + 63) / 64, 0);
  std::vector<Level> levels(static_cast<size_t>(v.max_depth()) + 1, Level{kDead, nullptr});
  levels[0] = {config, configs_[config].next.get()};
  if (counts) ++counts->computed;
  if (!counts || !walk_by_length(levels, allowed, counts)) walk_range(levels, 1, v.num_nodes(), allowed);
  int32_t num_allowed = 0;
  for (uint64_t word : allowed) num_allowed += std::popcount(word);
  auto set = std::make_shared<TokenSet>();
  set->num_allowed = num_allowed;
  set->vocab_size = v.vocab_size();
  set->rejected = num_allowed * 2 > v.vocab_size();
  set->ids.reserve(static_cast<size_t>(set->rejected ? v.vocab_size() - num_allowed : num_allowed));
  for (size_t w = 0; w < allowed.size(); ++w) {
    uint64_t listed = set->rejected ? ~allowed[w] : allowed[w];
    if (w + 1 == allowed.size() && v.vocab_size() % 64 != 0) listed &= (uint64_t{1} << (v.vocab_size() % 64)) - 1;
    for (; listed != 0; listed &= listed - 1)
      set->ids.push_back(static_cast<int32_t>(w * 64) + std::countr_zero(listed));
  }
  return set;
}

// Where every plain byte takes `config`, or kMixed where they lead to different configurations.
int32_t CompiledGrammar::plain_step(int32_t config) const {
  if (configs_[config].plain_next != kNotComputed) return configs_[config].plain_next;
  int32_t next = advance_locked(config, ' ');
  for (int b = ' ' + 1; b < 0x7f && next != kMixed; ++b)
    if (TokenVocabulary::is_plain(static_cast<uint8_t>(b)) && advance_locked(config, static_cast<uint8_t>(b)) != next)
      next = kMixed;
  configs_[config].plain_next = next;
  return next;
}

// Where every multi-byte UTF-8 character takes `config`, or kMixed where they lead to different configurations
// or where a piece of a character is alive while every whole character dies (a token ending in that piece would
// be allowed where its count says not). A search over the pairs (configuration, UTF-8 state) reached by valid
// pieces: a JSON string's character rule has about 20 of them.
int32_t CompiledGrammar::character_step(int32_t config) const {
  if (configs_[config].character_next != kNotComputed) return configs_[config].character_next;
  constexpr size_t kMaxPairs = 4096;  // a grammar that tells so many pieces apart settles nothing by characters
  int32_t result = kNotComputed;
  auto meet = [&](int32_t reached) { result = result == kNotComputed || result == reached ? reached : kMixed; };
  std::vector<std::pair<int32_t, int>> pairs = {{config, kUtf8Boundary}};
  std::unordered_set<int64_t> seen = {int64_t{config} * kUtf8NumStates + kUtf8Boundary};
  for (size_t i = 0; i < pairs.size() && result != kMixed; ++i) {
    const auto [c, state] = pairs[i];
    for (const Utf8Step& step : utf8_steps(state)) {
      if (step.hi < 0x80) continue;  // ASCII: plain_step's
      for (int b = step.lo; b <= step.hi && result != kMixed; ++b) {
        const int32_t next = advance_locked(c, static_cast<uint8_t>(b));
        if (step.to == kUtf8Boundary || next == kDead) {
          meet(next);  // a dead piece: every character it begins dies too
        } else if (seen.insert(int64_t{next} * kUtf8NumStates + step.to).second) {
          if (pairs.size() == kMaxPairs) result = kMixed;
          pairs.emplace_back(next, step.to);
        }
      }
    }
  }
  // More than the start: some piece was alive, which must not end in a dead configuration.
  if (result == kNotComputed || (result == kDead && pairs.size() > 1)) result = kMixed;
  configs_[config].character_next = result;
  return result;
}

// Text settled by length. Along the chain config -> next -> next ..., when every plain byte takes each
// configuration to one same next one (a string's characters, a class counted by {m,n}), a plain token of length
// n is allowed exactly when the chain's n-th configuration is alive. When every multi-byte UTF-8 character takes
// each configuration there too (a JSON string's characters, counted by maxLength or not), the same holds for
// every text token by its count: characters, plus one for a piece of a character at its end (a piece lives
// exactly where whole characters do, character_step checks). Only the subtrees that leave text (or, without the
// characters, plain text) are walked, each from the chain's configuration before it. When the first configuration
// tells plain bytes apart, walk_by_class's turn; false, with nothing marked, when a later one does.
bool CompiledGrammar::walk_by_length(std::vector<Level>& levels, std::vector<uint64_t>& allowed,
                                     MaskCounts* counts) const {
  const TokenVocabulary& v = *vocabulary_;
  std::vector<Level> chain = {levels[0]};  // chain[n]: the configuration after n characters
  bool by_characters = true;
  int32_t alive = 0;  // texts of up to this many characters leave a live configuration
  // No token holds more than max_depth characters: how the configuration after that many moves never matters.
  for (; alive < v.max_depth(); ++alive) {
    const int32_t c = chain[alive].config;
    const int32_t next = plain_step(c);
    if (next == kMixed) return alive == 0 && walk_by_class(levels, allowed, counts);
    by_characters = by_characters && character_step(c) == next;
    chain[alive].next = configs_[c].next.get();
    if (next == kDead) break;
    chain.push_back({next, configs_[next].next.get()});
  }
  v.settled_bits(alive, by_characters, allowed);
  if (by_characters) {
    counts->by_text += alive > 0;
    const std::vector<TokenVocabulary::TextExit>& exits = v.text_exits();
    for (int32_t i = 0, n = v.num_text_exits_up_to(alive); i < n; ++i) {
      const TokenVocabulary::TextExit& exit = exits[i];
      // From the chain's configuration after the exit's whole characters, through the piece of one after them.
      int32_t depth = v.node_depth(exit.node) - 1 - exit.partial_length;
      levels[depth] = chain[exit.chars];
      for (int32_t k = 0; k < exit.partial_length; ++k, ++depth)
        levels[depth + 1] = step(levels[depth], static_cast<uint8_t>(exit.partial >> (8 * k)));
      if (levels[depth].config != kDead) walk_range(levels, exit.node, v.subtree_end(exit.node), allowed);
    }
    return true;
  }
  counts->by_plain_text += alive > 0;
  const std::vector<int32_t>& exits = v.exit_nodes();
  for (int32_t i = 0, n = v.num_exits_up_to(alive + 1); i < n; ++i) {
    const int32_t depth = v.node_depth(exits[i]);
    levels[depth - 1] = chain[depth - 1];
    walk_range(levels, exits[i], v.subtree_end(exits[i]), allowed);
  }
  return true;
}

// Text of one byte class settled by length, where a configuration tells plain bytes apart but moves alike by
// most of them (an email's local part: letters, digits and "_+-" count on, "." and "@" go elsewhere; a hostname's
// labels; hex digits). The class: the plain bytes that take the configuration where most of them do. When every
// byte of it takes each configuration of the chain to one same next one, the tokens of class bytes only are
// settled by length and the subtrees that leave the class are walked, as for plain text. False, with nothing
// marked, when the class is small or some configuration on the chain tells its bytes apart.
bool CompiledGrammar::walk_by_class(std::vector<Level>& levels, std::vector<uint64_t>& allowed,
                                    MaskCounts* counts) const {
  constexpr int kMinClassBytes = 8;  // smaller classes (a literal, a sign) leave little to settle
  const TokenVocabulary& v = *vocabulary_;
  const int32_t start = levels[0].config;
  std::vector<std::pair<int32_t, int>> groups;  // (next configuration, plain bytes that go there)
  for (int b = 0x20; b < 0x7f; ++b) {
    if (!TokenVocabulary::is_plain(static_cast<uint8_t>(b))) continue;
    const int32_t next = advance_locked(start, static_cast<uint8_t>(b));
    if (next == kDead) continue;
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == next; });
    if (it == groups.end())
      groups.emplace_back(next, 1);
    else
      ++it->second;
  }
  auto largest =
      std::max_element(groups.begin(), groups.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  if (largest == groups.end() || largest->second < kMinClassBytes) return false;
  ByteClass cls;
  for (int b = 0x20; b < 0x7f; ++b)
    if (TokenVocabulary::is_plain(static_cast<uint8_t>(b)) &&
        advance_locked(start, static_cast<uint8_t>(b)) == largest->first)
      cls.add(static_cast<uint8_t>(b), static_cast<uint8_t>(b));
  std::shared_ptr<const TokenVocabulary::ClassIndex> index = v.class_index(cls);
  if (!index) return false;
  std::vector<Level> chain = {levels[0]};  // chain[n]: the configuration after n class bytes
  int32_t alive = 0;
  for (; alive < v.max_depth(); ++alive) {
    const int32_t c = chain[alive].config;
    int32_t next = kNotComputed;
    for (int b = 0x20; b < 0x7f; ++b) {
      if (!cls.has(static_cast<uint8_t>(b))) continue;
      const int32_t to = advance_locked(c, static_cast<uint8_t>(b));
      if (next != kNotComputed && to != next) return false;
      next = to;
    }
    chain[alive].next = configs_[c].next.get();
    if (next == kDead) break;
    chain.push_back({next, configs_[next].next.get()});
  }
  counts->by_class += alive > 0;
  for (int32_t i = 0, n = index->ids_up_to[static_cast<size_t>(alive)]; i < n; ++i)
    mark(allowed, index->ids_by_length[static_cast<size_t>(i)]);
  const int32_t exits_end = index->exits_up_to[static_cast<size_t>(std::min(alive + 1, v.max_depth()))];
  for (int32_t i = 0; i < exits_end; ++i) {
    const int32_t exit = index->exits[static_cast<size_t>(i)];
    const int32_t depth = v.node_depth(exit);
    levels[depth - 1] = chain[depth - 1];
    walk_range(levels, exit, v.subtree_end(exit), allowed);
  }
  return true;
}

// One byte on from a walk's position, keeping the position's transition table once it has one.
CompiledGrammar::Level CompiledGrammar::step(Level& from, uint8_t byte) const {
  int32_t next = from.next ? (*from.next)[byte] : -1;
  if (next < 0) {
    next = advance_locked(from.config, byte);
    from.next = configs_[from.config].next.get();
  }
  return {next, configs_[next].next.get()};
}

// Walks nodes [begin, end), a subtree or the whole trie, from the configuration in levels[depth(begin) - 1].
// Each level keeps its configuration's transition table, so a live node costs one table read (the tables are
// heap arrays, whose addresses survive configs_ growing).
void CompiledGrammar::walk_range(std::vector<Level>& levels, int32_t begin, int32_t end,
                                 std::vector<uint64_t>& allowed) const {
  const TokenVocabulary& v = *vocabulary_;
  const std::vector<int32_t>& token_ids = v.token_ids();
  const uint32_t* words = v.node_words().data();
  for (int32_t node = begin; node < end;) {
    const uint32_t word = words[node];
    const int32_t depth = static_cast<int32_t>((word & ~TokenVocabulary::kHasTokens) >> 8);
    const uint8_t byte = static_cast<uint8_t>(word);
    const Level next = step(levels[depth - 1], byte);
    if (next.config == kDead) {
      node = v.subtree_end(node);
      continue;
    }
    levels[depth] = next;
    if (word & TokenVocabulary::kHasTokens)
      for (int32_t t = v.tokens_begin(node); t < v.tokens_begin(node + 1); ++t) mark(allowed, token_ids[t]);
    ++node;
  }
}

}  // namespace bm::engine::grammar
