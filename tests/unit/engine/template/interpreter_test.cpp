// jinja2 features one by one (expected outputs in tests/data/template/jinja_features.json come from jinja2
// with transformers' environment), plus load errors and the limits that stop hostile templates.
#include "engine/template/interpreter.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "engine/template/chat_template.h"
#include "tests/unit/engine/template/test_paths.h"

namespace bm::engine {
namespace {

absl::StatusOr<std::string> render(std::string_view source, std::string_view context_json = "{}",
                                   RenderLimits limits = {}) {
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl.ok()) return tmpl.status();
  tmpl->set_limits(limits);
  auto context = Value::from_json(context_json);
  if (!context.ok()) return context.status();
  ChatTemplate::Inputs in;
  in.messages = Value::array({});
  in.extra = *context;
  return tmpl->render(in);
}

TEST(JinjaFeatures, MatchJinja2) {
  std::ifstream in(testing::template_test_data_dir() / "jinja_features.json");
  ASSERT_TRUE(in) << "tests/data/template/jinja_features.json missing";
  std::stringstream ss;
  ss << in.rdbuf();
  auto features = Value::from_json(ss.str());
  ASSERT_TRUE(features.ok()) << features.status();
  ASSERT_GE(features->items().size(), 50u);
  for (const Value& f : features->items()) {
    const std::string& source = f.find("template")->as_string();
    auto tmpl = ChatTemplate::parse(source);
    ASSERT_TRUE(tmpl.ok()) << source << "\n" << tmpl.status();
    ChatTemplate::Inputs inputs;
    inputs.extra = *f.find("context");
    // The features render without the chat variables, as jinja2's plain render(**context) does.
    auto got = tmpl->render(inputs);
    if (const Value* out = f.find("output")) {
      ASSERT_TRUE(got.ok()) << source << "\n" << got.status();
      EXPECT_EQ(*got, out->as_string()) << source;
    } else {
      EXPECT_FALSE(got.ok()) << source << "\nshould fail like jinja2: " << f.find("error")->as_string()
                             << "\nbut rendered: " << *got;
    }
  }
}

// Python dicts iterate in insertion order and transformers' tojson is json.dumps, so a tool's keys come out in
// the order they went in; dictsort is the one way a template asks for sorted keys.
TEST(ChatTemplateRender, InsertionOrderSurvivesParseValueAndTojsonWhileDictsortSorts) {
  constexpr std::string_view kContext =
      R"({"x": {"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}, "a": 1}})";
  auto got = render(
      "{{ x | tojson }}|{% for k, v in x.items() %}{{ k }},{% endfor %}|{{ x | items | map('first') | join(',') }}|"
      "{{ x | dictsort | map('first') | join(',') }}",
      kContext);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, R"({"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}, "a": 1})"
                  "|type,function,a,|type,function,a|a,function,type");
}

TEST(ChatTemplateErrors, RaiseExceptionCarriesExactlyItsMessage) {
  auto out = render("line one\n{{ raise_exception('Conversation roles must alternate') }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Conversation roles must alternate");
}

TEST(ChatTemplateErrors, UnsupportedSyntaxNamesLineAndConstruct) {
  struct Case {
    const char* source;
    const char* needle;
  };
  const Case cases[] = {
      {"ok\n{% include 'x.jinja' %}", "line 2: unsupported construct '{% include %}'"},
      {"\n\n{% call foo() %}x{% endcall %}", "line 3: unsupported construct '{% call %}'"},
      {"{{ x | wordwrap }}", "line 1: unsupported filter 'wordwrap'"},
      {"{% if x is frobnicated %}{% endif %}", "line 1: unsupported test 'frobnicated'"},
      {"{% for x in y recursive %}{% endfor %}", "unsupported construct 'recursive'"},
      {"{{ f(*args) }}", "unsupported construct: '*args'"},
      {"{% if x %}\nnever closed", "line 1: block is never closed"},
      {"{% endif %}", "unknown or misplaced tag '{% endif %}'"},
      {"{{ 'unterminated }}", "unterminated string literal"},
      {"a\n{{ x }", "line 2: unterminated '{{' tag"},
      {"{% break %}", "'{% break %}' outside a for loop"},
      {"{{ 99999999999999999999 }}", "does not fit in 64 bits"},
  };
  for (const auto& c : cases) {
    auto t = ChatTemplate::parse(c.source);
    ASSERT_FALSE(t.ok()) << c.source;
    EXPECT_NE(std::string(t.status().message()).find(c.needle), std::string::npos)
        << c.source << " -> " << t.status().message();
  }
}

TEST(ChatTemplateErrors, RuntimeErrorsNameTheLine) {
  auto out = render("a\nb\n{{ 1 + 'x' }}");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(std::string(out.status().message()).find("line 3"), std::string::npos) << out.status();
}

TEST(ChatTemplateLimits, EndlessWorkStopsWithAClearError) {
  RenderLimits limits;
  limits.max_steps = 100'000;
  auto out = render("{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}", "{}", limits);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(out.status().message()).find("work limit"), std::string::npos) << out.status();
}

TEST(ChatTemplateLimits, UnboundedRecursionStops) {
  auto out = render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(std::string(out.status().message()).find("nested deeper"), std::string::npos) << out.status();
}

TEST(ChatTemplateLimits, OutputAndStringGrowthAreBounded) {
  RenderLimits limits;
  limits.max_output_bytes = 1 << 16;
  auto doubling = render(
      "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ "
      "ns.s }}",
      "{}", limits);
  ASSERT_FALSE(doubling.ok());
  EXPECT_EQ(doubling.status().code(), absl::StatusCode::kResourceExhausted);
  auto repeat = render("{{ 'ab' * 100000000 }}", "{}", limits);
  ASSERT_FALSE(repeat.ok());
  auto range = render("{{ range(1000000) | length }}");
  ASSERT_FALSE(range.ok());
  EXPECT_NE(std::string(range.status().message()).find("sandbox limit"), std::string::npos);
}

TEST(ChatTemplateLimits, DeepNestingIsALoadError) {
  std::string deep = "{{ " + std::string(500, '(') + "1" + std::string(500, ')') + " }}";
  auto t = ChatTemplate::parse(deep);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("nested too deeply"), std::string::npos) << t.status();
}

TEST(ChatTemplateRender, SelfReferencingNamespaceDoesNotLeakOrLoop) {
  // A namespace holding itself is a reference cycle; rendering must still finish (ASan/LSan builds check the
  // cycle is broken afterwards).
  auto out = render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "True");
}

TEST(ChatTemplateRender, ExtraVariablesOverrideAndToolsDefaultToNone) {
  auto tmpl = ChatTemplate::parse("{{ tools is none }} {{ add_generation_prompt }} {{ bos_token }} {{ flag }}");
  ASSERT_TRUE(tmpl.ok());
  tmpl->set_variable("bos_token", Value::string("<s>"));
  ChatTemplate::Inputs in;
  in.messages = Value::array({});
  in.add_generation_prompt = false;
  in.extra = Value::object({{"flag", Value::boolean(true)}});
  auto out = tmpl->render(in);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "True False <s> True");
}

}  // namespace
}  // namespace bm::engine
