#include "engine/runtime/sampler.h"
#include "engine/backend/backend.h"

#include "engine/models/causal_lm.h"

#include <gtest/gtest.h>

#include <iostream>
#include <optional>

#include <cmath>
#include <map>
#include <random>

#include "engine/backend/cpu/candidates.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/grammar_request.h"
#include "engine/grammar/token_vocabulary.h"
#include "tests/unit/engine/runtime/sequence_factory.h"

namespace bm::engine {
namespace {

using testing::make_sequence;

constexpr int32_t kVocab = 8;
constexpr int32_t kEos = 7;

std::vector<float> logits_of(std::vector<float> probs) {
  std::vector<float> l;
  for (float p : probs) l.push_back(p > 0 ? std::log(p) : -1e30f);
  return l;
}

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

TEST(Sampler, GreedyTakesTheLargestLogitAndTheLowestIdOnTies) {
  Sampler sampler(kVocab, {kEos});
  auto seq = make_sequence(1, {0}, greedy());
  EXPECT_EQ(sampler.sample(std::vector<float>{0, 1, 5, 2, 5, 0, 0, 0}, *seq).token_id, 2);
}

TEST(Sampler, LogitBiasAndPenaltiesChangeTheChoice) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits{0, 3, 2.9f, 0, 0, 0, 0, 0};
  SamplingParams p = greedy();
  p.logit_bias = {{2, 0.5f}};
  EXPECT_EQ(sampler.sample(logits, *make_sequence(1, {0}, p)).token_id, 2);

  SamplingParams rep = greedy();
  rep.repetition_penalty = 1.2f;  // 3 / 1.2 = 2.5 < 2.9
  EXPECT_EQ(sampler.sample(logits, *make_sequence(2, {1}, rep)).token_id, 2);

  SamplingParams freq = greedy();
  freq.frequency_penalty = 0.06f;  // two occurrences: 3 - 0.12 < 2.9
  auto seq = make_sequence(3, {0}, freq);
  seq->append_token(1);
  EXPECT_EQ(sampler.sample(logits, *seq).token_id, 1);  // one occurrence: 2.94 > 2.9
  seq->append_token(1);
  EXPECT_EQ(sampler.sample(logits, *seq).token_id, 2);
}

TEST(Sampler, PresencePenaltyCountsATokenOnce) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits{0, 3, 2.5f, 0, 0, 0, 0, 0};
  SamplingParams p = greedy();
  p.presence_penalty = 0.4f;
  auto seq = make_sequence(1, {0}, p);
  seq->append_token(1);
  seq->append_token(1);
  EXPECT_EQ(sampler.sample(logits, *seq).token_id, 1);  // 3 - 0.4 = 2.6 > 2.5
  p.presence_penalty = 0.6f;
  auto seq2 = make_sequence(2, {0}, p);
  seq2->append_token(1);
  EXPECT_EQ(sampler.sample(logits, *seq2).token_id, 2);
}

TEST(Sampler, MinTokensMasksEosAndStopTokensUntilReached) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits{0, 0, 0, 9, 0, 0, 0, 10};
  SamplingParams p = greedy();
  p.min_tokens = 1;
  p.stop_token_ids = {3};
  EXPECT_EQ(sampler.sample(logits, *make_sequence(1, {0}, p)).token_id, 0);
  auto seq = make_sequence(2, {0}, p);
  seq->append_token(5);
  EXPECT_EQ(sampler.sample(logits, *seq).token_id, kEos);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits = logits_of({0.1f, 0.2f, 0.4f, 0.3f, 0, 0, 0, 0});
  for (uint64_t seed = 0; seed < 50; ++seed) {
    SamplingParams k;
    k.top_k = 1;
    EXPECT_EQ(sampler.sample(logits, *make_sequence(1, {0}, k, seed)).token_id, 2);
    SamplingParams top_p;
    top_p.top_p = 0.01f;
    EXPECT_EQ(sampler.sample(logits, *make_sequence(1, {0}, top_p, seed)).token_id, 2);
    SamplingParams min_p;
    min_p.min_p = 0.9f;
    EXPECT_EQ(sampler.sample(logits, *make_sequence(1, {0}, min_p, seed)).token_id, 2);
  }
}

// Frequencies of many draws against the distribution; the seed is fixed, so this is deterministic.
std::map<int32_t, double> frequencies(Sampler& sampler, const std::vector<float>& logits, SamplingParams p, int draws) {
  auto seq = make_sequence(1, {0}, p, 42);
  std::map<int32_t, double> f;
  for (int i = 0; i < draws; ++i) f[sampler.sample(logits, *seq).token_id] += 1.0 / draws;
  return f;
}

TEST(Sampler, DrawsFollowTheDistributionAfterTopPAndTemperature) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits = logits_of({0.5f, 0.3f, 0.15f, 0.05f, 0, 0, 0, 0});
  auto f = frequencies(sampler, logits, SamplingParams{}, 40000);
  EXPECT_NEAR(f[0], 0.5, 0.01);
  EXPECT_NEAR(f[1], 0.3, 0.01);
  EXPECT_NEAR(f[3], 0.05, 0.01);
  SamplingParams p;
  p.top_p = 0.75f;  // keeps 0 and 1 (0.5 + 0.3 reaches it): renormalised 0.625 / 0.375
  f = frequencies(sampler, logits, p, 40000);
  EXPECT_NEAR(f[0], 0.625, 0.01);
  EXPECT_NEAR(f[1], 0.375, 0.01);
  EXPECT_EQ(f.count(2), 0u);
  SamplingParams cold;
  cold.temperature = 0.5f;  // squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 over 0.365
  f = frequencies(sampler, logits, cold, 40000);
  EXPECT_NEAR(f[0], 0.25 / 0.365, 0.01);
  EXPECT_NEAR(f[1], 0.09 / 0.365, 0.01);
}

// A large vocabulary, where top-p alone ranks only the best 1024 first: the top-p share is of the whole
// distribution, not of those 1024 (token 0 holds 0.5, tokens 1-1023 share 0.4, the other 3072 share 0.1; top_p 0.8
// keeps token 0 and the 768 next, so token 0 is drawn 0.5 / 0.8 of the time).
TEST(Sampler, TopPIsAShareOfTheWholeDistributionInALargeVocabulary) {
  constexpr int32_t kBig = 4096;
  Sampler sampler(kBig, {kBig - 1});
  std::vector<float> logits(kBig);
  for (int32_t id = 0; id < kBig; ++id) logits[id] = std::log(id == 0 ? 0.5f : id < 1024 ? 0.4f / 1023 : 0.1f / 3072);
  SamplingParams p;
  p.top_p = 0.8f;
  auto f = frequencies(sampler, logits, p, 40000);
  EXPECT_NEAR(f[0], 0.5 / 0.8, 0.01);
  for (const auto& [id, share] : f) EXPECT_LE(id, 769) << "top-p kept a token beyond the 0.8 prefix";
  SamplingParams k;
  k.top_k = 2;  // token 0 and token 1 (ties go to the lower id), renormalised
  f = frequencies(sampler, logits, k, 40000);
  EXPECT_NEAR(f[0], 0.5 / (0.5 + 0.4 / 1023), 0.01);
  EXPECT_EQ(f.size(), 2u);
}

TEST(Sampler, WithoutTopKOrTopPEveryTokenCanBeDrawnAndMinPCuts) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits = logits_of({0.5f, 0.3f, 0.15f, 0.05f, 0, 0, 0, 0});
  SamplingParams p;
  p.min_p = 0.2f;  // keeps tokens whose probability is at least 0.2 × 0.5: 0, 1 and 2
  auto f = frequencies(sampler, logits, p, 40000);
  EXPECT_NEAR(f[0], 0.5 / 0.95, 0.01);
  EXPECT_NEAR(f[2], 0.15 / 0.95, 0.01);
  EXPECT_EQ(f.count(3), 0u);
}

// The candidate path (what a GPU sends back instead of whole rows) must pick exactly the token the whole row
// gives, for every combination of settings it accepts: random logits with ties, penalties, bias, masking. Top-p
// without top-k settles from the candidates when its nucleus lies inside them, and otherwise says so (the engine
// then samples the whole row): both must happen here, and a settled draw must be the whole row's.
TEST(Sampler, CandidatesGiveTheSameTokensAsWholeRows) {
  constexpr int32_t kBig = 2000;
  constexpr int32_t kBigEos = 1999;
  Sampler sampler(kBig, {kBigEos});
  std::mt19937 rng(2025);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  auto pick = [&](auto... options) {
    const std::vector<double> v{static_cast<double>(options)...};
    return v[rng() % v.size()];
  };
  int compared = 0, top_p_settled = 0, top_p_unsettled = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<float> logits(kBig);
    const bool ties = trial % 3 == 0;
    for (float& l : logits) l = ties ? std::round(normal(rng)) : normal(rng);
    SamplingParams p;
    p.temperature = static_cast<float>(pick(0.0, 0.7, 1.3));
    p.top_k = static_cast<int32_t>(pick(-1, 1, 5, 20, 64));
    p.top_p = static_cast<float>(pick(1.0, 0.9, 0.5));
    p.min_p = static_cast<float>(pick(0.0, 0.0, 0.1));
    p.repetition_penalty = static_cast<float>(pick(1.0, 1.3, 0.8));
    p.frequency_penalty = static_cast<float>(pick(0.0, 0.5, -0.5));
    p.presence_penalty = static_cast<float>(pick(0.0, 0.7, -0.7));
    if (rng() % 2) p.logit_bias = {{static_cast<int32_t>(rng() % kBig), static_cast<float>(pick(5.0, -100.0, 100.0))}};
    p.min_tokens = static_cast<int32_t>(pick(0, 10));
    p.ignore_eos = rng() % 2;
    if (rng() % 2) p.stop_token_ids = {static_cast<int32_t>(rng() % kBig)};
    p.logprobs = static_cast<int32_t>(pick(-1, 0, 5));
    std::vector<int32_t> prompt(50);
    for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % kBig);
    auto whole = make_sequence(1, prompt, p, trial);
    auto from_candidates = make_sequence(2, prompt, p, trial);
    for (int i = 0; i < 4; ++i) {
      const int32_t t = static_cast<int32_t>(rng() % kBig);
      whole->append_token(t);
      from_candidates->append_token(t);
    }
    const int32_t k = sampler.candidates_needed(*from_candidates);
    if (k == 0) {  // plain sampling (neither top-k nor top-p) needs the whole row
      ASSERT_TRUE(p.temperature > 0 && p.top_k < 0 && p.top_p >= 1);
      continue;
    }
    CandidateRequest request;
    request.k = k + static_cast<int32_t>(rng() % 3);  // a batch may ask for more than this row needs
    request.listed_starts = {0};
    sampler.listed_ids(*from_candidates, request.listed_ids);
    request.listed_starts.push_back(static_cast<int32_t>(request.listed_ids.size()));
    request.log_sum_exp = p.logprobs >= 0;  // as the engine asks (BatchSampler::plan_candidates)
    if (sampler.needs_tempered_mass(*from_candidates))
      request.inverse_temperatures = {static_cast<float>(1.0 / p.temperature)};
    Candidates candidates;
    select_candidates(logits, kBig, request, candidates);
    ASSERT_EQ(candidates.log_sum_exp.size(), request.log_sum_exp ? 1u : 0u);
    RowCandidates row{candidates.ids, candidates.logits, request.listed_ids, candidates.listed_logits,
                      request.log_sum_exp ? candidates.log_sum_exp[0] : 0.0f};
    if (!candidates.tempered_lse.empty()) row.tempered_lse = candidates.tempered_lse[0];
    for (int draw = 0; draw < 3; ++draw) {
      const SampledToken a = sampler.sample(logits, *whole);
      std::optional<SampledToken> settled = sampler.sample(row, *from_candidates);
      if (sampler.needs_tempered_mass(*from_candidates)) ++(settled ? top_p_settled : top_p_unsettled);
      ASSERT_TRUE(settled || sampler.needs_tempered_mass(*from_candidates));
      const SampledToken b = settled ? *settled : sampler.sample(logits, *from_candidates);
      ASSERT_EQ(a.token_id, b.token_id) << "trial " << trial << " draw " << draw;
      ASSERT_EQ(a.logprob.has_value(), b.logprob.has_value());
      if (a.logprob) {
        EXPECT_NEAR(a.logprob->logprob, b.logprob->logprob, 1e-4);
        ASSERT_EQ(a.logprob->top.size(), b.logprob->top.size());
        for (size_t i = 0; i < a.logprob->top.size(); ++i) {
          EXPECT_EQ(a.logprob->top[i].first, b.logprob->top[i].first);
          EXPECT_NEAR(a.logprob->top[i].second, b.logprob->top[i].second, 1e-4);
        }
      }
      ++compared;
    }
  }
  EXPECT_GT(compared, 7000);
  EXPECT_GT(top_p_settled, 100);
  EXPECT_GT(top_p_unsettled, 100);
  std::cout << "top-p rows settled from candidates: " << top_p_settled << ", needing the whole row: " << top_p_unsettled
            << "\n";
}

// A vocabulary of n ids for grammars: the last is end-of-sequence (special: no bytes), 32..126 are their ASCII
// character, the rest pairs of characters of JSON and of the regex below.
std::shared_ptr<const grammar::CompiledGrammar> grammar_over(int32_t n, grammar::GrammarKind kind,
                                                             const std::string& text) {
  std::vector<std::string> bytes(static_cast<size_t>(n));
  for (int id = 32; id < 127; ++id) bytes[id] = std::string(1, static_cast<char>(id));
  const std::string alphabet = "abcxyz{}\":,[]0123456789 ";
  for (int id = 127, k = 0; id < n - 1; ++id, ++k)
    bytes[id] = std::string{alphabet[k % alphabet.size()], alphabet[(k / alphabet.size()) % alphabet.size()]};
  auto vocabulary = std::make_shared<const grammar::TokenVocabulary>(std::move(bytes), n);
  absl::StatusOr<grammar::Grammar> g = grammar::build_grammar({kind, text, {}, std::nullopt});
  EXPECT_TRUE(g.ok()) << g.status();
  absl::StatusOr<std::shared_ptr<const grammar::CompiledGrammar>> c = grammar::CompiledGrammar::compile(*g, vocabulary);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

// Under a grammar, candidates from a row the backend masked (Sampler::fill_mask, as the GPU path sends it) give
// exactly the whole row's token and logprobs, in every grammar state a text reaches: open, complete, and closed
// (only end-of-sequence left, which min_tokens would mask: the grammar wins), with bias on forbidden tokens,
// penalties on tokens the grammar forbids, stop tokens, top-k larger than what the grammar allows, and top-p.
TEST(Sampler, CandidatesOfAMaskedRowGiveTheSameTokensAsConstrainedWholeRows) {
  constexpr int32_t kBig = 700;
  constexpr int32_t kBigEos = kBig - 1;
  Sampler sampler(kBig, {kBigEos});
  const std::shared_ptr<const grammar::CompiledGrammar> grammars[] = {
      grammar_over(kBig, grammar::GrammarKind::kRegex, "[a-c]{2,4}(xyz|zz)"),
      grammar_over(kBig, grammar::GrammarKind::kJsonSchema,
                   R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["xy", "zz"]}},
                       "required": ["a", "b"]})")};
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  auto pick = [&](auto... options) {
    const std::vector<double> v{static_cast<double>(options)...};
    return v[rng() % v.size()];
  };
  int compared = 0, closed = 0, grammar_won = 0, one_allowed = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    std::vector<float> logits(kBig);
    for (float& l : logits) l = trial % 3 == 0 ? std::round(normal(rng)) : normal(rng);
    SamplingParams p;
    p.grammar = grammars[trial % 2];
    p.temperature = static_cast<float>(pick(0.0, 0.7, 1.3));
    p.top_k = static_cast<int32_t>(pick(-1, 1, 5, 64));
    p.top_p = static_cast<float>(pick(1.0, 0.9, 0.5));
    p.min_p = static_cast<float>(pick(0.0, 0.1));
    p.repetition_penalty = static_cast<float>(pick(1.0, 1.3));
    p.presence_penalty = static_cast<float>(pick(0.0, 0.7));
    if (rng() % 2) p.logit_bias = {{'q', 100.0f}, {static_cast<int32_t>(rng() % kBig), -5.0f}};
    p.min_tokens = static_cast<int32_t>(pick(0, 20));
    p.ignore_eos = rng() % 2;
    if (rng() % 3 == 0) p.stop_token_ids = {static_cast<int32_t>(pick(600, 'a'))};
    p.logprobs = static_cast<int32_t>(pick(-1, 0, 5));
    std::vector<int32_t> prompt(20);
    for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % kBig);
    auto whole = make_sequence(1, prompt, p, trial);
    auto from_candidates = make_sequence(2, prompt, p, trial);
    // Walk both matchers through the same allowed tokens, often to the end of the text.
    const int steps = static_cast<int>(rng() % 12);
    for (int step = 0; step < steps && !whole->matcher->is_terminated(); ++step) {
      const std::shared_ptr<const grammar::TokenSet> allowed = whole->matcher->allowed_tokens();
      std::vector<int32_t> ids;
      for (int32_t id = 0; id < kBig; ++id)
        if (allowed->allows(id)) ids.push_back(id);
      if (ids.empty()) break;
      const int32_t t = ids[rng() % ids.size()];
      ASSERT_TRUE(whole->matcher->accept_token(t) && from_candidates->matcher->accept_token(t));
      whole->append_token(t);
      from_candidates->append_token(t);
    }
    const int32_t k = sampler.candidates_needed(*from_candidates);
    if (k == 0) continue;  // plain sampling needs the whole row, under a grammar too
    CandidateRequest request;
    request.k = k;
    request.listed_starts = {0};
    sampler.listed_ids(*from_candidates, request.listed_ids);
    request.listed_starts.push_back(static_cast<int32_t>(request.listed_ids.size()));
    request.log_sum_exp = p.logprobs >= 0;
    if (sampler.needs_tempered_mass(*from_candidates))
      request.inverse_temperatures = {static_cast<float>(1.0 / p.temperature)};
    request.mask_rows = {0};
    request.masks.resize(static_cast<size_t>(mask_words(kBig)));
    sampler.fill_mask(*from_candidates, request.masks);
    Candidates candidates;
    select_candidates(logits, kBig, request, candidates);
    RowCandidates row{candidates.ids, candidates.logits, request.listed_ids, candidates.listed_logits,
                      request.log_sum_exp ? candidates.log_sum_exp[0] : 0.0f};
    if (!candidates.tempered_lse.empty()) row.tempered_lse = candidates.tempered_lse[0];
    // No candidate is a token the grammar forbids: the backend leaves them out rather than padding with them.
    int allowed_candidates = 0;
    for (int32_t id : candidates.ids)
      if (id >= 0) {
        ++allowed_candidates;
        EXPECT_TRUE(cpu::mask_allows(request.masks, id)) << "trial " << trial << " candidate " << id;
      }
    one_allowed += allowed_candidates == 1 && k > 1 ? 1 : 0;
    closed += whole->matcher->is_terminated() ? 1 : 0;
    if (whole->matcher->is_terminated() && p.min_tokens > whole->num_output_tokens()) ++grammar_won;
    for (int draw = 0; draw < 3; ++draw) {
      const SampledToken a = sampler.sample(logits, *whole);
      std::optional<SampledToken> settled = sampler.sample(row, *from_candidates);
      ASSERT_TRUE(settled || sampler.needs_tempered_mass(*from_candidates)) << "trial " << trial;
      const SampledToken b = settled ? *settled : sampler.sample(logits, *from_candidates);
      ASSERT_EQ(a.token_id, b.token_id) << "trial " << trial << " draw " << draw;
      EXPECT_TRUE(cpu::mask_allows(request.masks, a.token_id));
      ASSERT_EQ(a.logprob.has_value(), b.logprob.has_value());
      if (a.logprob) {
        EXPECT_NEAR(a.logprob->logprob, b.logprob->logprob, 1e-4);
        ASSERT_EQ(a.logprob->top.size(), b.logprob->top.size()) << "trial " << trial;
        for (size_t i = 0; i < a.logprob->top.size(); ++i) {
          EXPECT_EQ(a.logprob->top[i].first, b.logprob->top[i].first);
          EXPECT_NEAR(a.logprob->top[i].second, b.logprob->top[i].second, 1e-4);
        }
      }
      ++compared;
    }
  }
  EXPECT_GT(compared, 2000);
  EXPECT_GT(closed, 50);
  EXPECT_GT(grammar_won, 10);
  EXPECT_GT(one_allowed, 20);
  std::cout << "masked rows compared: " << compared << ", closed texts: " << closed
            << ", min_tokens overruled by the grammar: " << grammar_won << ", one token allowed: " << one_allowed
            << "\n";
}

TEST(Sampler, TopPAloneAsksForTheMostCandidatesAndTheirMass) {
  Sampler sampler(151936, {151645});
  SamplingParams p;
  p.temperature = 0.6f;
  p.top_p = 0.95f;  // DeepSeek-R1's recommended settings
  EXPECT_EQ(sampler.candidates_needed(*make_sequence(1, {0}, p)), Backend::kMaxCandidates);
  EXPECT_TRUE(sampler.needs_tempered_mass(*make_sequence(1, {0}, p)));
  p.top_p = 1.0f;  // plain sampling: every token may be drawn
  EXPECT_EQ(sampler.candidates_needed(*make_sequence(1, {0}, p)), 0);
  p.top_p = 0.95f;
  p.top_k = 20;
  EXPECT_EQ(sampler.candidates_needed(*make_sequence(1, {0}, p)), 20);
  p.top_k = 500;
  EXPECT_EQ(sampler.candidates_needed(*make_sequence(1, {0}, p)), 0);
  SamplingParams greedy_with_logprobs;
  greedy_with_logprobs.temperature = 0;
  greedy_with_logprobs.logprobs = 5;
  EXPECT_EQ(sampler.candidates_needed(*make_sequence(1, {0}, greedy_with_logprobs)), 5);
}

TEST(Sampler, TheSameSeedGivesTheSameDraws) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits = logits_of({0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 0, 0, 0});
  auto a = make_sequence(1, {0}, SamplingParams{}, 9);
  auto b = make_sequence(2, {0}, SamplingParams{}, 9);
  auto c = make_sequence(3, {0}, SamplingParams{}, 10);
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 32; ++i) {
    da.push_back(sampler.sample(logits, *a).token_id);
    db.push_back(sampler.sample(logits, *b).token_id);
    dc.push_back(sampler.sample(logits, *c).token_id);
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, LogprobsAreTheRawLogSoftmaxWithTopAlternatives) {
  Sampler sampler(kVocab, {kEos});
  std::vector<float> logits = logits_of({0.5f, 0.3f, 0.15f, 0.05f, 0, 0, 0, 0});
  SamplingParams p = greedy();
  p.logprobs = 2;
  p.logit_bias = {{1, 5.0f}};  // changes the choice, not the reported distribution
  SampledToken t = sampler.sample(logits, *make_sequence(1, {0}, p));
  ASSERT_TRUE(t.logprob.has_value());
  EXPECT_EQ(t.token_id, 1);
  EXPECT_NEAR(t.logprob->logprob, std::log(0.3), 1e-5);
  ASSERT_EQ(t.logprob->top.size(), 2u);
  EXPECT_EQ(t.logprob->top[0].first, 0);
  EXPECT_NEAR(t.logprob->top[0].second, std::log(0.5), 1e-5);
  EXPECT_EQ(t.logprob->top[1].first, 1);
}

TEST(SamplingParams, OutOfRangeFieldsAreNamed) {
  auto message = [](SamplingParams p) { return std::string(validate_sampling_params(p, kVocab).message()); };
  SamplingParams p;
  EXPECT_TRUE(validate_sampling_params(p, kVocab).ok());
  p.top_p = 0;
  EXPECT_NE(message(p).find("top_p"), std::string::npos);
  p = {};
  p.temperature = -1;
  EXPECT_NE(message(p).find("temperature"), std::string::npos);
  p = {};
  p.logit_bias = {{kVocab, 1.0f}};
  EXPECT_NE(message(p).find("logit_bias"), std::string::npos);
  p = {};
  p.min_tokens = 20;
  EXPECT_NE(message(p).find("min_tokens"), std::string::npos);
  p = {};
  p.stop_token_ids = {-1};
  EXPECT_NE(message(p).find("stop_token_ids"), std::string::npos);
  p = {};
  p.n = 0;
  EXPECT_NE(message(p).find("n must"), std::string::npos);
}

}  // namespace
}  // namespace bm::engine
