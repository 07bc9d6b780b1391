#!/usr/bin/env python3
"""Writes the chat-template conformance data for bm_template_tests.

    .venv/bin/python tests/tools/template_renders.py [--shared-models /work/shared/models] [--out tests/data/template]

Deterministic: conversations come from a fixed-seed generator, renders from transformers'
render_jinja_template (the code behind apply_chat_template: jinja2 ImmutableSandboxedEnvironment with
trim_blocks/lstrip_blocks, HF's tojson, raise_exception, strftime_now) with the tokenizer's special tokens as
variables. Outputs (both committed; CI only reads them):
  conversations.json     families (model dir, template source, variables) and their input cases
  expected_renders.json  family -> case -> {"output": text} or {"error": "<Python exception>"}
  jinja_features.json    small templates exercising each supported construct, with jinja2's output or error
Templates are read in place from the shared model files; nothing of them is copied here.
"""
import argparse
import json
import os
import random
import sys

from transformers.utils.chat_template_utils import _compile_jinja_template, render_jinja_template

SPECIAL_TOKENS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]

# family -> (model dir under shared/models (special tokens come from its tokenizer_config.json),
#            template source: "load" = ChatTemplate::load order, a file name in the model dir, or a path under
#            shared/models, conversation style, number of random cases)
FAMILIES = {
    "qwen2.5": ("Qwen/Qwen2.5-7B-Instruct", "load", "qwen", 60),
    "qwq": ("Qwen/QwQ-32B", "load", "qwen", 70),  # its template rejects content=None tool calls
    "qwen2.5-vl": ("Qwen/Qwen2.5-VL-7B-Instruct", "load", "vl", 60),  # chat_template.json
    "qwen2.5-vl-tools": ("Qwen/Qwen2.5-VL-3B-Instruct", "tokenizer_config.json", "qwen", 60),
    "deepseek-r1-distill": ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "load", "deepseek", 60),
    # llama.cpp's edited copies: heavier whitespace control, enable_thinking, tool calls with content.
    "llama.cpp-qwq": ("Qwen/QwQ-32B", "templates/llama.cpp-Qwen-QwQ-32B.jinja", "qwen", 30),
    "llama.cpp-r1-distill-qwen": ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
                                  "templates/llama.cpp-deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
                                  "deepseek", 30),
    "llama.cpp-r1-distill-llama": ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
                                   "templates/llama.cpp-deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
                                   "deepseek", 30),
}
SEED = 20251125

TEXTS = [
    "hi", "What is 2+2?", "Tell me a joke about \"quotes\" and 'apostrophes'.", "  leading and trailing spaces  ",
    "line one\nline two\n\nline four", "你好，世界！请用中文回答。", "emoji 😀🚀 and accents: café, naïve",
    "tabs\tand\\backslashes\\", "{\"json\": [1, 2, 3]}", "<b>html</b> & <i>entities</i>", "",
    "ends with newline\n", "\n\nstarts with newlines", "Ünïcödé ✓ — dash … ellipsis", "a" * 200,
    "{{ not a template }} {% neither %}", "Mixed 中文 and English, 数字 123.", "\u2028line separator\u2029",
]
SYSTEMS = ["You are terse.", "You are a helpful assistant that answers in French.", "", "系统提示：简洁回答。",
           "Multi\nline\nsystem prompt"]
THOUGHTS = ["<think>\nLet me think.\n</think>\n\n", "<think>short</think>", "<think>\n多步推理\n</think>\n", ""]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. 北京"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "calculate", "description": "Evaluate an arithmetic \"expression\".",
        "parameters": {"type": "object", "properties": {
            "expression": {"type": "string"}, "precision": {"type": "integer", "minimum": 0, "maximum": 10,
                                                            "default": 2},
            "scale": {"type": "number", "default": 1.0, "multipleOf": 1e-05}, "exact": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}}, "meta": {"type": "object"},
            "nothing": {"default": None}}}}},
    {"type": "function", "function": {"name": "no_params", "description": "", "parameters": {}}},
]

# Keys out of alphabetical order, as clients send them: the OpenAI SDK writes {"type", "function"} and {"name",
# "description", "parameters"}; pydantic's model_json_schema() writes "properties" before "required", "title" and
# "type", with "$defs" and "anyOf". transformers hands the template these dicts as they are, so tojson keeps the
# order; the key_order_* cases below check that we do too (and tests/e2e/test_serving.py sends them to /tokenize).
SDK_TOOLS = [
    {"type": "function", "function": {
        "name": "search_flights", "description": "Find flights between two airports.",
        "parameters": {
            "properties": {
                "origin": {"title": "Origin", "type": "string", "description": "IATA code, e.g. SFO"},
                "destination": {"title": "Destination", "type": "string"},
                "when": {"anyOf": [{"$ref": "#/$defs/Date"}, {"type": "null"}], "default": None},
                "passengers": {"type": "integer", "minimum": 1, "default": 1}},
            "required": ["origin", "destination"], "title": "SearchFlights", "type": "object",
            "$defs": {"Date": {"properties": {"year": {"type": "integer"}, "month": {"type": "integer"}},
                               "required": ["year", "month"], "title": "Date", "type": "object"}},
            "additionalProperties": False},
        "strict": True}},
    {"type": "function", "function": {
        "name": "zoom", "description": "Zoom <in> & 'out' — 缩放 \"now\"",
        "parameters": {"type": "object", "properties": {
            "level": {"type": "number", "maximum": 10.5, "exclusiveMinimum": 0, "multipleOf": 0.25},
            "center": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            "options": {"type": "object", "properties": {}, "required": []}},
            "required": ["level"]}}},
]
SDK_CALL_ARGS = [("search_flights", {"origin": "SFO", "destination": "NRT", "when": {"year": 2025, "month": 3},
                                     "passengers": 2}),
                 ("zoom", {"level": 2.5, "center": [1.0, -0.5], "options": {}})]


def key_order_cases(as_string):
    """Tools and tool-call arguments whose keys are not in alphabetical order."""
    calls = [{"id": f"call_{i}", "type": "function",
              "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if as_string else args}}
             for i, (name, args) in enumerate(SDK_CALL_ARGS)]
    return {
        "key_order_sdk_tools": {
            "messages": [{"role": "system", "content": "You book trips."},
                         {"role": "user", "content": "Flights SFO to Tokyo in March?"}],
            "tools": SDK_TOOLS, "add_generation_prompt": True},
        "key_order_tool_call_arguments": {
            "messages": [{"role": "user", "content": "Flights SFO to Tokyo in March, then zoom the map."},
                         {"role": "assistant", "content": None if as_string else "", "tool_calls": calls},
                         {"role": "tool", "content": "{\"flights\": [{\"number\": \"UA837\", \"price\": 1234.5}]}"},
                         {"role": "tool", "content": "ok"}],
            "tools": SDK_TOOLS, "add_generation_prompt": True},
        "key_order_object_arguments": {
            "messages": [{"role": "user", "content": "Zoom in."},
                         {"role": "assistant", "content": "",
                          "tool_calls": [{"type": "function", "function": {"name": "zoom", "arguments":
                                                                           SDK_CALL_ARGS[1][1]}}]},
                         {"role": "tool", "content": "done"}],
            "tools": SDK_TOOLS[1:], "add_generation_prompt": False},
    }


def tool_call(rng, call_id, as_string):
    name = rng.choice(["get_weather", "calculate", "no_params"])
    args = {"get_weather": {"city": rng.choice(["Paris", "北京", "São Paulo"]), "unit": "celsius"},
            "calculate": {"expression": "2*(3+4)", "precision": rng.randint(0, 5), "scale": 0.5, "exact": True,
                          "tags": ["a", "b"], "meta": {}},
            "no_params": {}}[name]
    if as_string:
        args = json.dumps(args, ensure_ascii=rng.random() < 0.5)
    return {"id": f"call_{call_id}", "type": "function", "function": {"name": name, "arguments": args}}


def tool_result(rng):
    return rng.choice(["{\"temperature\": 21, \"unit\": \"celsius\"}", "14", "error: city not found",
                       "多行\n结果", "[1, 2, 3]"])


def text(rng):
    return rng.choice(TEXTS)


def vision_parts(rng):
    parts = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["text", "image", "image_url", "video", "image_key_only", "text"])
        if kind == "text":
            parts.append({"type": "text", "text": text(rng)})
        elif kind == "image":
            parts.append({"type": "image", "image": "file:///tmp/cat.png"})
        elif kind == "image_url":
            parts.append({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
        elif kind == "video":
            parts.append({"type": "video", "video": ["file:///f1.jpg", "file:///f2.jpg"]})
        else:
            parts.append({"image": "https://example.com/dog.jpg"})
    return parts


def conversation(rng, style):
    """One random but well-formed conversation in `style` (qwen, vl or deepseek)."""
    vl = style == "vl"
    deepseek = style == "deepseek"
    with_tools = not vl and rng.random() < 0.45
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    call_id = 0
    for _ in range(rng.randint(1, 4)):
        if vl and rng.random() < 0.7:
            messages.append({"role": "user", "content": vision_parts(rng)})
        else:
            messages.append({"role": "user", "content": text(rng)})
        if with_tools and rng.random() < 0.6:
            calls = [tool_call(rng, call_id + i, deepseek or rng.random() < 0.3) for i in range(rng.randint(1, 3))]
            call_id += len(calls)
            content = None if (deepseek or rng.random() < 0.3) else rng.choice(["", "Let me check.", "好的。"])
            messages.append({"role": "assistant", "content": content, "tool_calls": calls})
            for _ in calls:
                messages.append({"role": "tool", "content": tool_result(rng)})
        if rng.random() < 0.8:
            answer = rng.choice(THOUGHTS) + text(rng) if rng.random() < 0.6 else text(rng)
            if vl and rng.random() < 0.3:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            else:
                messages.append({"role": "assistant", "content": answer})
        if not deepseek and rng.random() < 0.1:
            messages.append({"role": "system", "content": "Mid-conversation system note."})
    case = {"messages": messages, "add_generation_prompt": rng.random() < 0.6}
    if with_tools:
        case["tools"] = rng.sample(TOOLS, rng.randint(1, len(TOOLS)))
    if vl:
        case["extra"] = {"add_vision_id": rng.random() < 0.5}
    elif rng.random() < 0.3:
        case["extra"] = {"enable_thinking": rng.random() < 0.5}
    return case


def odd_cases(style):
    """Hand-written edge cases: errors in the reference must be errors for us too."""
    cases = {
        "user_only": {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": True},
        "no_generation_prompt": {"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False},
        "assistant_missing_content": {"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}],
                                      "add_generation_prompt": True},
        "list_content_on_text_template": {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "add_generation_prompt": True},
        "numbers_in_content": {"messages": [{"role": "user", "content": 42}], "add_generation_prompt": True},
        "empty_messages": {"messages": [], "add_generation_prompt": True},
    }
    cases.update(key_order_cases(as_string=style == "deepseek"))
    if style == "qwen":
        cases["tools_without_messages_system"] = {
            "messages": [{"role": "user", "content": "weather?"}], "tools": TOOLS, "add_generation_prompt": True}
        cases["tool_call_content_none_then_result"] = {
            "messages": [{"role": "user", "content": "weather?"},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"type": "function", "function": {"name": "get_weather",
                                                               "arguments": {"city": "Paris"}}}]},
                         {"role": "tool", "content": "21C"}],
            "tools": TOOLS, "add_generation_prompt": True}
        cases["tool_call_without_function_wrapper"] = {
            "messages": [{"role": "user", "content": "x"},
                         {"role": "assistant", "content": "ok", "tool_calls": [
                             {"name": "calculate", "arguments": {"expression": "1+1"}}]}],
            "add_generation_prompt": False}
    return cases


def template_source(models, model_dir, source):
    base = os.path.join(models, model_dir)
    config = json.load(open(os.path.join(base, "tokenizer_config.json"), encoding="utf-8"))
    if "/" in source:
        tmpl = open(os.path.join(models, source), encoding="utf-8").read()
    elif source == "load":
        if os.path.exists(os.path.join(base, "chat_template.jinja")):
            tmpl = open(os.path.join(base, "chat_template.jinja"), encoding="utf-8").read()
        elif os.path.exists(os.path.join(base, "chat_template.json")):
            tmpl = json.load(open(os.path.join(base, "chat_template.json"), encoding="utf-8"))["chat_template"]
        else:
            tmpl = config["chat_template"]
    else:
        tmpl = json.load(open(os.path.join(base, source), encoding="utf-8"))["chat_template"]
    variables = {}
    for name in SPECIAL_TOKENS:
        v = config.get(name)
        if isinstance(v, dict):
            v = v.get("content")
        if isinstance(v, str):
            variables[name] = v
    return tmpl, variables


def render(tmpl, variables, case):
    kwargs = dict(variables)
    kwargs.update(case.get("extra", {}))
    try:
        out, _ = render_jinja_template(conversations=[case["messages"]], tools=case.get("tools"),
                                       chat_template=tmpl, add_generation_prompt=case["add_generation_prompt"],
                                       **kwargs)
        return {"output": out[0]}
    except Exception as e:  # the reference failing is itself an expectation
        return {"error": f"{type(e).__name__}: {e}"}


# (template, context) pairs; each is rendered with the same environment transformers compiles templates in.
FEATURES = [
    ("  {% if true %}\nA\n  {% endif %}\nB", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c", {}),
    ("x {{- ' y ' -}} z", {}),
    ("{% for i in xs %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}", {"xs": [1, 2, 3]}),
    ("{% for i in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.length }}"
     "/{{ loop.first }}/{{ loop.last }};{% endfor %}", {"xs": ["a", "b", "c"]}),
    ("{% for i in xs %}{{ loop.previtem is defined }}{{ loop.nextitem | default('-') }}{{ loop.cycle('o', 'e') }}"
     "{% endfor %}", {"xs": [1, 2, 3]}),
    ("{% for i in [] %}x{% else %}empty{% endfor %}", {}),
    ("{% for i in range(10) if i is odd %}{{ i }}{% if i > 5 %}{% break %}{% endif %}{% endfor %}", {}),
    ("{% for i in range(5) %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": [1, 2], "c": None}}),
    ("{% for k in d %}{{ k }}{% endfor %}|{{ d | length }}", {"d": {"z": 1, "y": 2}}),
    ("{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}"
     "{% endfor %}{{ ns.n }} {{ ns.s }}", {}),
    ("{% set x = 1 %}{% for i in range(2) %}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% if true %}{% set y = 3 %}{% endif %}{{ y }}", {}),
    ("{% set a, b = [1, 2] %}{{ b }}{{ a }}", {}),
    ("{% set t %}block {{ 1 + 1 }}{% endset %}[{{ t }}]", {}),
    ("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} "
     "{{ greet('B', punct='?') }} {{ greet(name='C') }}", {}),
    ("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(4) }}", {}),
    ("{{ raise_exception('bad role: ' ~ role) }}", {"role": "robot"}),
    ("{{ 1 + 2 * 3 - 4 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7.5 // 2 }}", {}),
    ("{{ 1 / 3 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 2.0 }} {{ -0.0 }} {{ 10 / 2 }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ 'x' + 'y' }}", {}),
    ("{{ xs }} {{ d }} {{ t }} {{ none }} {{ true }} {{ s }}", {"xs": [1, "two", None, True, 2.5], "d": {"k": "v'q"},
                                                                "t": ["only"], "s": "it's \"q\""}),
    ("{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ none is none }} {{ 1 is number }} "
     "{{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 3 is odd }} {{ 4 is even }} "
     "{{ 9 is divisibleby 3 }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 2 is eq(2) }} "
     "{{ 'abc' is lower }} {{ x is not none }}", {"x": 1}),
    ("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'a' in 'cat' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }} "
     "{{ true == 1 }} {{ [1, 2] == [1, 2] }} {{ 'b' >= 'a' }} {{ none == none }}", {}),
    ("{{ 'yes' if x else 'no' }} {{ 'a' if false }}|{{ x and 'and' }} {{ 0 or 'or' }} {{ not x }}", {"x": 1}),
    ("{{ s.split(',') }} {{ s.split(',', 1) }} {{ ' a  b '.split() }} {{ s.rsplit(',', 1) }} {{ 'a b'.split(None) }}",
     {"s": "x,y,z"}),
    ("[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}][{{ s.lstrip('\n ') }}]",
     {"s": " \n hi there \t\n"}),
    ("{{ s.startswith('He') }} {{ s.endswith(('x', 'lo')) }} {{ s.upper() }} {{ s.lower() }} {{ s.title() }} "
     "{{ s.replace('l', 'L') }} {{ s.replace('l', 'L', 1) }} {{ s.find('l') }} {{ s.count('l') }} "
     "{{ s.capitalize() }} {{ '-'.join(['a', 'b']) }}", {"s": "heLlo wOrld Hello"}),
    ("{{ s[0] }} {{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[:2] }} {{ xs[1:] }} {{ xs[-2:] }} {{ xs[::2] }} "
     "{{ s[10] is defined }}", {"s": "héllo", "xs": [1, 2, 3, 4]}),
    ("{{ d.a }} {{ d['a'] }} {{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.get('z') }} {{ d.missing is defined }} "
     "{{ d.keys() | list }} {{ d.values() | list }} {{ d.nested.x }} {{ xs.0 }}",
     {"d": {"a": 1, "nested": {"x": "deep"}}, "xs": ["zero"]}),
    ("{{ x | tojson }} {{ x | tojson(indent=2) }} {{ s | tojson }} {{ x | tojson(sort_keys=true) }} "
     "{{ x | tojson(separators=(',', ':')) }} {{ s | tojson(ensure_ascii=true) }}",
     {"x": {"b": [1, 2.5, None, True, {}], "a": "é\n\"", "c": []}, "s": "中文 \u0001 </script>"}),
    ("{{ '  pad  ' | trim }}|{{ 'Hello' | upper }}|{{ 'Hello' | lower }}|{{ 'hello world-foo' | title }}|"
     "{{ 'hELLO' | capitalize }}|{{ xs | length }}|{{ xs | count }}|{{ 'héllo' | length }}|{{ xs | first }}|"
     "{{ xs | last }}|{{ xs | join(', ') }}|{{ xs | join }}|{{ xs | reverse | list }}|{{ 'abc' | reverse }}",
     {"xs": [3, 1, 2]}),
    ("{{ missing | default('dflt') }}|{{ '' | default('empty', true) }}|{{ 0 | d('zero') }}|{{ none | string }}|"
     "{{ '42' | int + 1 }}|{{ '3.5' | float }}|{{ 'x' | int }}|{{ 3.9 | int }}|{{ 7 | float }}|{{ -3 | abs }}|"
     "{{ 2.5 | round }}|{{ 3.14159 | round(2) }}|{{ 3 | round }}|{{ 2.1 | round(0, 'ceil') }}",
     {}),
    ("{{ xs | sort | list }}|{{ xs | sort(reverse=true) | list }}|{{ ws | sort | list }}|"
     "{{ ws | sort(case_sensitive=true) | list }}|{{ ps | sort(attribute='n') | map(attribute='n') | list }}|"
     "{{ xs | unique | list }}|{{ xs | sum }}|{{ xs | min }}|{{ xs | max }}|{{ d | dictsort }}|{{ d | items | list }}",
     {"xs": [3, 1, 2, 3], "ws": ["b", "A", "a", "C"], "ps": [{"n": 2}, {"n": 1}], "d": {"b": 1, "a": 2}}),
    ("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}|"
     "{{ ms | rejectattr('role', 'eq', 'user') | list | length }}|{{ ms | selectattr('tool') | list | length }}|"
     "{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 0, 2] | reject | list }}|{{ ['a', 'b'] | map('upper') | list }}",
     {"ms": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a", "tool": 1},
             {"role": "user", "content": "u2"}]}),
    ("{{ 'line1\nline2\n\nline4' | indent(2) }}|{{ 'a\nb' | indent(first=true) }}|{{ 'a\n\nb' | indent(2, blank=true) }}",
     {}),
    ("{{ '<a href=\"x\">&</a>' | e }} {{ 'x' | safe }}", {}),
    ("{{ range(3) | list }} {{ range(1, 7, 2) | list }} {{ range(5, 0, -2) | list }} {{ dict(a=1, b='x') }}", {}),
    ("{# a comment #}A{#- trimmed -#}  B  {# c #}\nC", {}),
    ("{{ {'a': 1, 'b': [1, 2]}['b'][1] }} {{ (1, 2) }} {{ (1,) }} {{ () }} {{ [1, 2, 3][-1] }} {{ 'abc'[1] }}", {}),
    ("{{ \"double \\\" quoted\" }} {{ 'esc\\n\\t\\u00e9\\x41' }} {{ 'adjacent' ' strings' }}", {}),
    ("{% if x %}1{% elif y %}2{% else %}3{% endif %}{% if not x and not y %}4{% endif %}", {"x": False, "y": 0}),
    ("{{ messages[0].content }}{{ messages[0]['role'] }}", {"messages": [{"role": "user", "content": "C"}]}),
    ("{{ undefined_thing.attr }}", {}),
    ("{{ none.attr is defined }} {{ 'abc'.nomethod is defined }}", {}),
    ("{{ 1 + 'a' }}", {}),
    ("{{ [1, 2].append(3) }}", {}),
    ("{% for x in 5 %}{% endfor %}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ ns.x }}{% set ns = namespace() %}{% set ns.y = 2 %}{{ ns.y }}{{ ns }}", {}),
    ("{%- for m in messages -%}\n  {{- m.role }}:\n  {%- if m.content is string %} {{ m.content }}\n"
     "  {%- else %}{% for p in m.content %} [{{ p.type }}]{% endfor %}\n  {%- endif %}\n{% endfor %}",
     {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": [{"type": "image"}]}]}),
    ("{%+ if true %}  keep{% endif %}\n   {%+ if true %}lead{% endif %}", {}),
    ("\n\n{% if true %}\n  x\n{% endif %}\n\n", {}),
    ("text\r\nwith crlf\r\n{% if true %}\r\nX{% endif %}", {}),
    ("{{ 'a' if x is defined else 'b' }}{{ x is defined and x }}", {}),
    ("{{ x | tojson }}", {"x": [1e-07, 1.5e+300, 100.0, 123456789012345.0, 1e16, 0.0001, -2.5]}),
    ("{{ s | length }} {{ s[2:4] }} {{ s.upper() }} {{ s | upper }}", {"s": "ÀéÎõü straße"}),
    # transformers' tojson is json.dumps: insertion order, no HTML escaping, Python's separators and indent.
    ("{{ x | tojson }}|{{ x | tojson(indent=4) }}|{{ x | tojson(indent='\t') }}|{{ x | tojson(indent=0) }}|"
     "{{ x | tojson(indent=2, separators=(',', ' = ')) }}|{{ x | tojson(ensure_ascii=true) }}|{{ x | items | list }}|"
     "{{ x | dictsort }}|{{ x | dictsort(reverse=true) | map('first') | join }}|{{ x.keys() | list }}|"
     "{% for k, v in x.items() %}{{ k }};{% endfor %}|{{ x | tojson(sort_keys=true) }}",
     {"x": {"type": "object", "properties": {"b": {}, "a": []}, "required": ["b"], "Z": "<a href='x'>&amp;</a>",
            "u": "é中😀 \"\\/", "n": [1.0, -0.0, 1e-07, 2.5e+300, 100, True, None],
            "e": [{}, [], [[]], {"k": {}}]}}),
    ("{{ tools | tojson }}", {"tools": SDK_TOOLS}),
    ("{{ strftime_now('%Y') | length }}", {}),
    ("{% set x = [1, 2, 3] %}{{ x | join('-') }}{% set y = x + [4] %}{{ y | length }}{{ x | length }}", {}),
    ("{{ 'a,b,,c'.split(',') }} {{ ',a,'.split(',') }} {{ 'abc'.split('x') }} {{ 'a b'.split(' ', 0) }}", {}),
    ("{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for c in 'hé' %}{{ c }}.{% endfor %}", {}),
]


def render_feature(template, context):
    try:
        return {"output": _compile_jinja_template(template).render(**context)}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-models", default=os.environ.get("BMSERVER_SHARED_MODELS",
                                                                  os.path.join(here, "../../../shared/models")))
    parser.add_argument("--out", default=os.path.join(here, "../data/template"))
    args = parser.parse_args()
    conversations = {}
    expected = {}
    for family, (model_dir, source, style, num_random) in FAMILIES.items():
        rng = random.Random(f"{SEED}-{family}")
        tmpl, variables = template_source(args.shared_models, model_dir, source)
        cases = {}
        for i in range(num_random):
            cases[f"random_{i:02d}"] = conversation(rng, style)
        cases.update(odd_cases(style))
        conversations[family] = {"model_dir": model_dir, "template": source, "variables": variables,
                                 "cases": cases}
        expected[family] = {name: render(tmpl, variables, case) for name, case in cases.items()}
        num_errors = sum("error" in r for r in expected[family].values())
        print(f"{family}: {len(cases)} cases, {num_errors} expected errors", file=sys.stderr)
    features = [{"template": t, "context": c, **render_feature(t, c)} for t, c in FEATURES]
    print(f"features: {len(features)} templates, {sum('error' in f for f in features)} expected errors",
          file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    for name, data in (("conversations.json", conversations), ("expected_renders.json", expected),
                       ("jinja_features.json", features)):
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
