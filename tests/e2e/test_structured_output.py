"""Structured output end to end: a random-weight model (real Qwen2.5 tokenizer) served on the CPU backend, whose
unconstrained output is garbage, so every valid JSON, regex match and tool call below is the grammar's doing.

The corpus (tests/data/structured_output/schemas: h*.json hand-written to cover every supported keyword,
recursion, unions and big enums; g*.json from tests/tools/make_schema_corpus.py) runs under several seeds and
every output must parse and validate with `jsonschema`. A random model inside a free string rarely picks a token
that closes it, so the requests add a small logit_bias toward closing tokens; the grammar alone decides what is
allowed, the bias only shortens what is."""
import concurrent.futures
import glob
import json
import os
import re
import unittest

from harness import SOURCE_DIR
from serving_fixture import ServedDaemon, http

try:
    import jsonschema
except ImportError:
    jsonschema = None

CORPUS = os.path.join(SOURCE_DIR, "tests", "data", "structured_output", "schemas")
SEEDS = (1, 2, 3)
CLOSERS = ['"', '",', '"}', '}', ']', '},', '],', '}}', ']}', ',', '"]']


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def openapi_nullable(schema):
    """OpenAPI's `nullable: true` (which the grammar honours) as JSON Schema, which `jsonschema` validates."""
    if isinstance(schema, dict):
        schema = {k: openapi_nullable(v) for k, v in schema.items()}
        if schema.pop("nullable", False):
            return {"anyOf": [schema, {"type": "null"}]}
    elif isinstance(schema, list):
        return [openapi_nullable(v) for v in schema]
    return schema


def validate(value, schema):
    """Draft 2020-12 with its format checks (date-time and time through rfc3339-validator)."""
    jsonschema.Draft202012Validator(openapi_nullable(schema),
                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(value)


class StructuredOutputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if jsonschema is None:
            raise AssertionError("the jsonschema package is missing: run deploy/run-tests.sh "
                                 "(it installs tests/requirements.txt)")
        cls.served = ServedDaemon(flavours=("qwen2.5", "r1-qwen"))
        cls.model = cls.served.name("qwen2.5")
        cls.r1 = cls.served.name("r1-qwen")
        cls.base = cls.served.base
        cls.bias = {}
        for text in CLOSERS:
            ids = json.loads(http("POST", cls.base + "/tokenize", {"model": cls.model, "prompt": text,
                                                                 "add_special_tokens": False})[1])["tokens"]
            if len(ids) == 1:
                cls.bias[str(ids[0])] = 4.0

    @classmethod
    def tearDownClass(cls):
        cls.served.close()

    def chat(self, extra, content="Answer.", max_tokens=400, seed=1, stream=False):
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                "temperature": 1.0, "seed": seed, "logit_bias": self.bias, **extra}
        if stream:
            body["stream"] = True
        return http("POST", self.base + "/v1/chat/completions", body, timeout=600)

    def ok_choice(self, status, body):
        self.assertEqual(status, 200, body)
        return json.loads(body)["choices"][0]

    # --- the corpus -------------------------------------------------------------------------------------------
    def test_schema_corpus_validates(self):
        files = sorted(glob.glob(os.path.join(CORPUS, "*.json")))
        self.assertGreaterEqual(len(files), 100)
        jobs = [(f, s) for f in files for s in SEEDS]

        def run(job):
            path, seed = job
            schema = load(path)
            status, body = self.chat({"response_format": {"type": "json_schema", "json_schema": {
                "name": "x", "schema": schema, "strict": True}}}, seed=seed)
            return path, seed, schema, status, body

        failures = []
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for path, seed, schema, status, body in pool.map(run, jobs):
                name = os.path.basename(path)
                if status != 200:
                    failures.append(f"{name} seed {seed}: HTTP {status} {body[:300]}")
                    continue
                choice = json.loads(body)["choices"][0]
                text = choice["message"]["content"]
                if choice["finish_reason"] != "stop":
                    failures.append(f"{name} seed {seed}: finish_reason {choice['finish_reason']}: {text[:200]!r}")
                    continue
                try:
                    value = json.loads(text)
                    validate(value, schema)
                except Exception as e:  # noqa: BLE001 - every kind of failure is reported with its text
                    failures.append(f"{name} seed {seed}: {type(e).__name__}: {str(e)[:300]} in {text[:300]!r}")
        self.assertEqual(failures, [], "\n".join(failures))

    # --- the other forms ----------------------------------------------------------------------------------------
    def test_json_object(self):
        for seed in SEEDS:
            choice = self.ok_choice(*self.chat({"response_format": {"type": "json_object"}}, seed=seed))
            self.assertEqual(choice["finish_reason"], "stop", choice)
            self.assertIsInstance(json.loads(choice["message"]["content"]), dict)

    def test_guided_regex_fullmatches(self):
        patterns = [r"[A-Z]{2}-\d{3,5}", r"(yes|no)( because [a-z]{1,8})?", r"\w{1,10}@\w{1,8}\.(com|org)",
                    r"[0-9a-f]{8}", r"(\+|-)?\d{1,6}(\.\d{1,2})?", r"[^\n\d]{3,6}!"]
        for pattern in patterns:
            for seed in SEEDS:
                choice = self.ok_choice(*self.chat({"guided_regex": pattern}, seed=seed))
                self.assertEqual(choice["finish_reason"], "stop", choice)
                self.assertIsNotNone(re.fullmatch(pattern, choice["message"]["content"]),
                                     f"{pattern}: {choice['message']['content']!r}")

    def test_guided_choice_is_exact(self):
        options = ["positive", "negative", "neutral", "mixed feelings"]
        seen = set()
        for seed in range(8):
            choice = self.ok_choice(*self.chat({"guided_choice": options}, seed=seed))
            self.assertIn(choice["message"]["content"], options)
            seen.add(choice["message"]["content"])
        self.assertGreater(len(seen), 1)  # the grammar selects, the sampler still samples

    def test_guided_grammar_gbnf(self):
        grammar = r'''
root ::= expr
expr ::= term (("+" | "-") term){0,3}
term ::= num | "(" expr ")"
num ::= [1-9] [0-9]{0,2}
'''
        for seed in SEEDS:
            choice = self.ok_choice(*self.chat({"guided_grammar": grammar}, seed=seed))
            text = choice["message"]["content"]
            self.assertEqual(choice["finish_reason"], "stop", text)
            self.assertRegex(text, r"^[0-9+\-()]+$")
            self.assertEqual(text.count("("), text.count(")"))
            eval(compile(text, "<grammar output>", "eval"), {"__builtins__": {}})  # parses as arithmetic

    def test_completions_endpoint_and_whitespace_pattern(self):
        schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
                  "required": ["a", "b"]}
        status, body = http("POST", self.base + "/v1/completions", {
            "model": self.model, "prompt": "JSON:", "max_tokens": 200, "seed": 4, "logit_bias": self.bias,
            "guided_json": schema, "guided_whitespace_pattern": ""})
        self.assertEqual(status, 200, body)
        text = json.loads(body)["choices"][0]["text"]
        validate(json.loads(text), schema)
        self.assertNotIn(" ", text)  # the whitespace pattern allows none

    def test_streaming_deltas_join_to_valid_json(self):
        schema = load(os.path.join(CORPUS, "h30_openai_strict.json"))
        status, body = self.chat({"response_format": {"type": "json_schema", "json_schema": {"name": "s",
                                                                                               "schema": schema}}},
                                 seed=5, stream=True)
        self.assertEqual(status, 200, body)
        text, finish = "", None
        for line in body.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                for c in chunk["choices"]:
                    text += c["delta"].get("content") or ""
                    finish = c.get("finish_reason") or finish
        self.assertEqual(finish, "stop")
        validate(json.loads(text), schema)

    def test_max_tokens_cut_gives_length(self):
        schema = load(os.path.join(CORPUS, "h09_string_formats.json"))
        choice = self.ok_choice(*self.chat({"response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": schema}}}, max_tokens=5))
        self.assertEqual(choice["finish_reason"], "length")
        with self.assertRaises(json.JSONDecodeError):
            json.loads(choice["message"]["content"])

    def test_logprobs_describe_the_constrained_distribution(self):
        choice = self.ok_choice(*self.chat({"guided_choice": ["alpha", "beta"], "logprobs": True,
                                            "top_logprobs": 5}))
        for entry in choice["logprobs"]["content"]:
            for alt in entry["top_logprobs"]:
                self.assertGreater(alt["logprob"], -1e30)  # only allowed tokens, never -inf
        first = choice["logprobs"]["content"][0]["top_logprobs"]
        self.assertTrue(all("alpha".startswith(a["token"]) or "beta".startswith(a["token"]) for a in first), first)

    def test_reasoning_model_reasons_first_then_answers_in_json(self):
        """DeepSeek-R1-Distill's template opens <think>: the grammar leaves the reasoning free (without a second
        </think>), and constrains what follows the block, which the reasoning parser returns as the content."""
        think_close = 151649  # </think> in DeepSeek-R1-Distill-Qwen's added tokens
        schema = load(os.path.join(CORPUS, "h30_openai_strict.json"))
        for seed in SEEDS:
            status, body = http("POST", self.base + "/v1/chat/completions", {
                "model": self.r1, "messages": [{"role": "user", "content": "Plan it."}], "max_tokens": 400,
                "seed": seed, "temperature": 1.0, "logit_bias": {**self.bias, str(think_close): 6.0},
                "response_format": {"type": "json_schema", "json_schema": {"name": "plan", "schema": schema}}},
                timeout=600)
            choice = self.ok_choice(status, body)
            self.assertEqual(choice["finish_reason"], "stop", choice)
            validate(json.loads(choice["message"]["content"]), schema)
        # Completions do not split reasoning: the constraint starts at the first token there.
        status, body = http("POST", self.base + "/v1/completions", {
            "model": self.r1, "prompt": "x", "max_tokens": 50, "guided_choice": ["yes", "no"]})
        self.assertEqual(status, 200, body)
        self.assertIn(json.loads(body)["choices"][0]["text"], ["yes", "no"])

    # --- tools ----------------------------------------------------------------------------------------------------
    TOOLS = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                             "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "add", "parameters": {
            "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "number", "minimum": 0,
                                                                              "maximum": 10}},
            "required": ["a", "b"]}}},
        {"type": "function", "function": {"name": "lookup", "parameters": {
            "type": "object", "properties": {"ids": {"type": "array", "items": {"$ref": "#/$defs/Id"}, "maxItems": 3}},
            "required": ["ids"], "$defs": {"Id": {"type": "string", "format": "uuid"}}}}},
        {"type": "function", "function": {"name": "ping"}},
    ]

    def test_tool_choice_required_arguments_validate(self):
        schemas = {t["function"]["name"]: t["function"].get("parameters", {"type": "object", "properties": {}})
                   for t in self.TOOLS}

        # parallel_tool_calls: OpenAI's default (true) lets one or more calls follow; false, exactly one.
        def run(case):
            seed, parallel = case
            extra = {} if parallel else {"parallel_tool_calls": False}
            return seed, parallel, self.chat({"tools": self.TOOLS, "tool_choice": "required", **extra}, seed=seed)

        names = set()
        cases = [(seed, parallel) for seed in range(24) for parallel in (True, False)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for seed, parallel, (status, body) in pool.map(run, cases):
                choice = self.ok_choice(status, body)
                calls = choice["message"].get("tool_calls") or []
                if parallel:
                    self.assertGreaterEqual(len(calls), 1, (seed, choice))
                else:
                    self.assertEqual(len(calls), 1, (seed, choice))
                self.assertEqual(choice["finish_reason"], "tool_calls", choice)
                self.assertFalse(choice["message"].get("content"), choice)  # nothing outside the calls
                for call in calls:
                    name = call["function"]["name"]
                    names.add(name)
                    validate(json.loads(call["function"]["arguments"]), schemas[name])
        self.assertGreater(len(names), 1)

    def test_named_tool_choice_arguments_validate(self):
        for seed in SEEDS:
            choice = self.ok_choice(*self.chat({"tools": self.TOOLS, "tool_choice": {
                "type": "function", "function": {"name": "lookup"}}}, seed=seed))
            calls = choice["message"]["tool_calls"]
            self.assertEqual(calls[0]["function"]["name"], "lookup")
            validate(json.loads(calls[0]["function"]["arguments"]), self.TOOLS[2]["function"]["parameters"])

    # --- bad input ------------------------------------------------------------------------------------------------
    def test_bad_input_is_a_400_naming_the_problem(self):
        cases = [
            ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"a": {"not": {"type": "null"}}}}}}}, "'not'"),
            ({"guided_json": "{not json"}, "guided_json"),
            ({"guided_json": {"type": "string", "format": "ipv6"}}, "ipv6"),
            ({"guided_regex": "(a)\\1"}, "backreference"),
            ({"guided_grammar": "root ::= \"a"}, "syntax error"),
            ({"guided_grammar": "root ::= root \"a\" | \"b\""}, "left-recursive"),
            ({"guided_json": {"type": "object", "properties": {"s": {"type": "string", "maxLength": 10**6}}}},
             "maxLength"),
            ({"guided_grammar": "root ::= " + " ".join(['"a"'] * 100000)}, "at most"),
            ({"response_format": {"type": "json_object"}, "guided_regex": "a"}, "only one"),
            ({"guided_regex": "a", "guided_choice": ["a"]}, "only one"),
            ({"response_format": {"type": "yaml"}}, "yaml"),
            ({"guided_whitespace_pattern": " "}, "only to JSON"),
            ({"tools": self.TOOLS, "tool_choice": "required", "guided_regex": "a"}, "cannot be combined"),
            ({"tools": self.TOOLS, "tool_choice": "required", "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ]
        for extra, needle in cases:
            status, body = self.chat(extra, max_tokens=5)
            self.assertEqual(status, 400, (extra, body))
            self.assertIn(needle, json.loads(body)["error"]["message"], extra if len(str(extra)) < 300 else needle)


if __name__ == "__main__":
    unittest.main()
