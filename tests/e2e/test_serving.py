"""Serving end to end: `bmserver chat serve` a tiny random-weight model on the CPU backend, then drive the
OpenAI API with the official `openai` SDK, curl-style raw HTTP, and hostile clients."""
import concurrent.futures
import json
import os
import random
import re
import socket
import subprocess
import time
import unittest

from harness import SOURCE_DIR, Daemon, binary
from serving_fixture import ServedDaemon, http, make_tiny_model

try:
    import openai
except ImportError:  # the venv provides it; without it the SDK tests cannot run
    openai = None


def metric(text, name, model=None):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if model is None or f'model_name="{model}"' in line:
                return float(line.rsplit(" ", 1)[1])
    return None


class ServingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.served = ServedDaemon(flavours=("qwen2.5", "r1-qwen", "qwq", "qwen2.5-vl"))
        cls.model = cls.served.name("qwen2.5")
        cls.r1 = cls.served.name("r1-qwen")
        cls.base = cls.served.base
        if openai is not None:
            cls.client = openai.OpenAI(base_url=cls.base + "/v1", api_key="unused", max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.served.close()

    def require_sdk(self):
        if openai is None:
            self.fail("the openai package is missing: run deploy/run-tests.sh (it installs tests/requirements.txt)")

    # --- the model is there -------------------------------------------------------------------------------
    def test_models_and_health(self):
        status, body = http("GET", self.base + "/health")
        self.assertEqual(status, 200, body)
        status, body = http("GET", self.base + "/v1/models")
        ids = [m["id"] for m in json.loads(body)["data"]]
        self.assertIn(self.model, ids)
        status, body = http("GET", self.base + "/v1/models/" + self.model)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["max_model_len"], 4096)

    def test_ps_lists_model(self):
        ps = self.served.daemon.cli_json("chat", "ps")
        names = {m["name"]: m for m in ps["models"]}
        self.assertIn(self.model, names)
        m = names[self.model]
        self.assertEqual(m["state"], "ready")
        self.assertEqual(m["backend"], "cpu")
        self.assertGreater(int(m["kv_capacity_tokens"]), 0)
        table = self.served.daemon.cli("chat", "ps")
        self.assertIn(self.model, table.stdout)

    # --- chat through the SDK -------------------------------------------------------------------------------
    def test_chat_non_streaming(self):
        self.require_sdk()
        r = self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Hello"}],
                                                max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(len(r.choices), 1)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertIsInstance(r.choices[0].message.content, str)
        self.assertEqual(r.usage.completion_tokens, 8)
        self.assertGreater(r.usage.prompt_tokens, 10)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + 8)

    def test_chat_streaming_matches_non_streaming(self):
        self.require_sdk()
        kw = dict(model=self.model, messages=[{"role": "user", "content": "Count to five"}], max_tokens=12,
                  temperature=0, extra_body={"ignore_eos": True})
        whole = self.client.chat.completions.create(**kw).choices[0].message.content
        chunks = list(self.client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, whole)
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finals, ["length"])
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, 12)

    def test_streaming_sends_a_chunk_per_token_even_inside_a_utf8_character(self):
        """Tokens whose bytes end inside a UTF-8 character still get their own chunk, with empty content (as vLLM
        streams), so per-chunk latencies are per token; the text stays exact. The bias makes the model emit only
        the byte tokens 0xF0 (a 4-byte lead) and 0x90 (a continuation), so many tokens complete no character."""
        self.require_sdk()
        with open(os.path.join(self.served.models["qwen2.5"], "vocab.json"), encoding="utf-8") as f:
            vocab = json.load(f)
        lead, continuation = vocab["\u00f0"], vocab["\u0132"]  # GPT-2 byte symbols of 0xF0 and 0x90
        kw = dict(model=self.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=24, temperature=1.0,
                  seed=7, logit_bias={str(lead): 100, str(continuation): 100}, extra_body={"ignore_eos": True})
        whole = self.client.chat.completions.create(**kw).choices[0].message.content
        chunks = [c for c in self.client.chat.completions.create(stream=True, **kw) if c.choices]
        self.assertEqual(len(chunks), 24)
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), whole)
        self.assertIn("", [c.choices[0].delta.content for c in chunks[1:]])
        # Completions stream the same way.
        ckw = dict(model=self.model, prompt="Hi", max_tokens=24, temperature=1.0, seed=7,
                   logit_bias={str(lead): 100, str(continuation): 100}, extra_body={"ignore_eos": True})
        text = self.client.completions.create(**ckw).choices[0].text
        cchunks = [c for c in self.client.completions.create(stream=True, **ckw) if c.choices]
        self.assertEqual(len(cchunks), 24)
        self.assertEqual("".join(c.choices[0].text for c in cchunks), text)

    def test_seed_reproducible_and_n(self):
        self.require_sdk()
        kw = dict(model=self.model, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=10,
                  temperature=1.0, seed=1234, n=3, extra_body={"ignore_eos": True})
        a = self.client.chat.completions.create(**kw)
        b = self.client.chat.completions.create(**kw)
        self.assertEqual(len(a.choices), 3)
        self.assertEqual([c.message.content for c in a.choices], [c.message.content for c in b.choices])
        self.assertEqual(sorted(c.index for c in a.choices), [0, 1, 2])
        self.assertGreater(len({c.message.content for c in a.choices}), 1, "n samples should differ")

    def test_logprobs(self):
        self.require_sdk()
        r = self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=4, temperature=0, logprobs=True, top_logprobs=3,
                                                extra_body={"ignore_eos": True})
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), 4)
        for tok in content:
            self.assertEqual(len(tok.top_logprobs), 3)
            self.assertLessEqual(tok.logprob, 0.0)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(tok.logprob, tok.top_logprobs[0].logprob, places=4)

    def test_stop_string(self):
        self.require_sdk()
        kw = dict(model=self.model, messages=[{"role": "user", "content": "Say something"}], temperature=0,
                  extra_body={"ignore_eos": True})
        full = self.client.chat.completions.create(max_tokens=24, **kw).choices[0].message.content
        if len(full) < 6:
            self.skipTest("the random model produced too little text to cut")
        stop = full[len(full) // 2: len(full) // 2 + 3]
        r = self.client.chat.completions.create(max_tokens=24, stop=[stop], **kw)
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].message.content, full[: full.index(stop)])
        streamed = "".join(c.choices[0].delta.content or "" for c in
                           self.client.chat.completions.create(max_tokens=24, stop=[stop], stream=True, **kw) if c.choices)
        self.assertEqual(streamed, full[: full.index(stop)])

    def test_completions(self):
        self.require_sdk()
        r = self.client.completions.create(model=self.model, prompt="The capital of France is", max_tokens=5,
                                           temperature=0, extra_body={"ignore_eos": True}, logprobs=2)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 5)
        self.assertEqual(len(r.choices[0].logprobs.tokens), 5)
        echo = self.client.completions.create(model=self.model, prompt="Echo me", max_tokens=2, echo=True,
                                              temperature=0, extra_body={"ignore_eos": True})
        self.assertTrue(echo.choices[0].text.startswith("Echo me"))
        s = list(self.client.completions.create(model=self.model, prompt=[1, 2, 3], max_tokens=3, stream=True,
                                                temperature=0, extra_body={"ignore_eos": True}))
        self.assertEqual(s[-1].choices[0].finish_reason, "length")

    def test_reasoning_split_for_r1(self):
        """The R1 template opens <think>: output before </think> is reasoning, after it content."""
        self.require_sdk()
        think_close = 151649  # </think> in DeepSeek-R1-Distill-Qwen's added tokens
        status, body = http("POST", self.base + "/detokenize", {"model": self.r1, "tokens": [think_close]})
        self.assertEqual(json.loads(body)["prompt"], "</think>")
        # Bias the random model towards '</think>' and a few word tokens, so it closes the block somewhere.
        word = json.loads(http("POST", self.base + "/tokenize", {"model": self.r1, "prompt": " ok",
                                                                 "add_special_tokens": False})[1])["tokens"][0]
        kw = dict(model=self.r1, messages=[{"role": "user", "content": "Why?"}], max_tokens=16, temperature=0,
                  logit_bias={str(think_close): 8, str(word): 10}, extra_body={"ignore_eos": True})
        raw = self.client.completions.create(model=self.r1, prompt=json.loads(http(
            "POST", self.base + "/tokenize", {"model": self.r1, "messages": kw["messages"]})[1])["tokens"],
            max_tokens=16, temperature=0, logit_bias=kw["logit_bias"], extra_body={"ignore_eos": True}).choices[0].text
        r = self.client.chat.completions.create(**kw).choices[0].message
        reasoning = getattr(r, "reasoning_content", None) or (r.model_extra or {}).get("reasoning_content")
        if "</think>" in raw:
            before, after = raw.split("</think>", 1)
            self.assertEqual(reasoning or "", before)
            self.assertEqual(r.content, after.lstrip("\n"))
        else:
            self.assertEqual(reasoning, raw)
        streamed = list(self.client.chat.completions.create(stream=True, **kw))
        s_reason = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in streamed if c.choices)
        s_content = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        self.assertEqual(s_reason, reasoning or "")
        self.assertEqual(s_content, r.content or "")

    def test_tool_choice_named_starts_the_call(self):
        """A named tool_choice renders the tools and opens the call in the prompt; output that does not complete
        valid JSON stays content (valid calls through the real server: bm_daemon_tests' scripted generator)."""
        self.require_sdk()
        tools = [{"type": "function", "function": {"name": "get_time", "description": "current time",
                                                   "parameters": {"type": "object", "properties": {}}}}]
        messages = [{"role": "user", "content": "What time is it?"}]
        named = {"type": "function", "function": {"name": "get_time"}}
        status, body = http("POST", self.base + "/tokenize", {"model": self.model, "messages": messages, "tools": tools,
                                                              "tool_choice": named})
        tokens = json.loads(body)["tokens"]
        prompt = json.loads(http("POST", self.base + "/detokenize", {"model": self.model, "tokens": tokens})[1])["prompt"]
        self.assertIn("<tools>", prompt)
        self.assertIn('"name": "get_time"', prompt)
        self.assertTrue(prompt.endswith('<|im_start|>assistant\n<tool_call>\n{"name": "get_time", "arguments": '), prompt[-120:])
        close = json.loads(http("POST", self.base + "/tokenize", {"model": self.model, "prompt": "</tool_call>"})[1])["tokens"]
        self.assertEqual(len(close), 1)
        r = self.client.chat.completions.create(model=self.model, messages=messages, tools=tools, tool_choice=named,
                                                max_tokens=1, temperature=0, logit_bias={str(close[0]): 100},
                                                extra_body={"ignore_eos": True})
        self.assertFalse(r.choices[0].message.tool_calls)
        self.assertTrue(r.choices[0].message.content.startswith("<tool_call>"))
        bad = http("POST", self.base + "/v1/chat/completions", {"model": self.model, "messages": messages,
                                                                 "tool_choice": {"type": "function", "function": {"name": "other"}},
                                                                 "tools": tools})
        self.assertEqual(bad[0], 400)

    def test_tokenize_detokenize(self):
        status, body = http("POST", self.base + "/tokenize", {"model": self.model, "prompt": "Hello world"})
        self.assertEqual(status, 200, body)
        tokens = json.loads(body)
        self.assertEqual(tokens["tokens"], [9707, 1879])
        self.assertEqual(tokens["count"], 2)
        status, body = http("POST", self.base + "/detokenize", {"model": self.model, "tokens": [9707, 1879]})
        self.assertEqual(json.loads(body)["prompt"], "Hello world")
        status, body = http("POST", self.base + "/tokenize", {"model": self.model, "messages": [{"role": "user", "content": "hi"}]})
        self.assertGreater(json.loads(body)["count"], 5)

    def test_tokenize_with_tools_matches_transformers_key_order(self):
        """The corpus' key_order_* conversations (tools, schemas and tool-call arguments whose keys are not in
        alphabetical order, as the OpenAI SDK and pydantic write them) give transformers' apply_chat_template ids
        on every template family: the request's key order reaches the template. The reference gets what vLLM
        gives it: string arguments parsed to objects; where that makes the template fail, we answer 400."""
        try:
            from transformers import AutoTokenizer
        except ImportError:
            self.fail("transformers is missing: run deploy/run-tests.sh (it installs tests/requirements.txt)")
        with open(os.path.join(SOURCE_DIR, "tests", "data", "template", "conversations.json"), encoding="utf-8") as f:
            corpus = json.load(f)
        families = {"qwen2.5": "qwen2.5", "qwq": "qwq", "r1-qwen": "deepseek-r1-distill",
                    "qwen2.5-vl": "qwen2.5-vl-tools"}
        compared = 0
        for flavour, family in families.items():
            tokenizer = AutoTokenizer.from_pretrained(self.served.models[flavour])
            cases = {k: v for k, v in corpus[family]["cases"].items() if k.startswith("key_order")}
            self.assertEqual(len(cases), 3, family)
            for name, case in cases.items():
                with self.subTest(family=family, case=name):
                    messages = json.loads(json.dumps(case["messages"]))
                    for m in messages:
                        for call in m.get("tool_calls") or []:
                            if isinstance(call["function"]["arguments"], str):
                                call["function"]["arguments"] = json.loads(call["function"]["arguments"])
                    try:
                        want = tokenizer.apply_chat_template(messages, tools=case.get("tools"), tokenize=True,
                                                             add_generation_prompt=case["add_generation_prompt"],
                                                             return_dict=False)
                    except Exception:  # the reference refuses it: so must we
                        want = None
                    request = {"model": self.served.name(flavour), "messages": case["messages"],
                               "add_generation_prompt": case["add_generation_prompt"]}
                    # R1's template has no tool format (tools are not rendered, and bmserverd, like vLLM without
                    # a tool parser, refuses them); its ids are the same without them.
                    if flavour != "r1-qwen" and "tools" in case:
                        request["tools"] = case["tools"]
                    status, body = http("POST", self.base + "/tokenize", request)
                    if want is None:
                        self.assertEqual(status, 400, body)
                        continue
                    self.assertEqual(status, 200, body)
                    got = json.loads(body)["tokens"]
                    if got != want:
                        self.assertEqual(tokenizer.decode(got), tokenizer.decode(want))
                    self.assertEqual(got, want)
                    compared += 1
        self.assertGreaterEqual(compared, 9)

    def test_metrics(self):
        http("POST", self.base + "/v1/completions", {"model": self.model, "prompt": "a", "max_tokens": 2, "ignore_eos": True})
        status, text = http("GET", self.base + "/metrics")
        self.assertEqual(status, 200)
        self.assertGreaterEqual(metric(text, "vllm:generation_tokens_total", self.model), 2)
        self.assertIsNotNone(metric(text, "vllm:kv_cache_usage_perc", self.model))
        self.assertIn("vllm:time_to_first_token_seconds_bucket", text)

    # --- bad input ---------------------------------------------------------------------------------------
    def assert_error(self, status_body, status, param=None):
        got, body = status_body
        self.assertEqual(got, status, body)
        err = json.loads(body)["error"]
        self.assertTrue(err["message"])
        for key in ("type", "param", "code"):
            self.assertIn(key, err)
        if param:
            self.assertEqual(err["param"], param)

    def test_bad_requests(self):
        url = self.base + "/v1/chat/completions"
        msgs = [{"role": "user", "content": "x"}]
        self.assert_error(http("POST", url, b"{not json"), 400)
        self.assert_error(http("POST", url, b"[1,2]"), 400)
        self.assert_error(http("POST", url, {"messages": msgs}), 400, "model")
        self.assert_error(http("POST", url, {"model": "nope", "messages": msgs}), 404, "model")
        self.assert_error(http("POST", url, {"model": self.model, "messages": "hi"}), 400, "messages")
        self.assert_error(http("POST", url, {"model": self.model, "messages": msgs, "top_p": 1.5}), 400, "top_p")
        self.assert_error(http("POST", url, {"model": self.model, "messages": msgs, "max_tokens": -1}), 400, "max_tokens")
        self.assert_error(http("POST", url, {"model": self.model, "messages": msgs, "temperature": "hot"}), 400, "temperature")
        self.assert_error(http("POST", url, {"model": self.model, "messages": [{"role": "wizard", "content": "x"}]}), 400)
        self.assert_error(http("POST", url, {"model": self.model, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}), 400)
        self.assert_error(http("POST", url, {"model": self.model, "messages": msgs, "max_tokens": 100000}), 400, "max_tokens")
        self.assert_error(http("POST", url, {"model": self.model, "messages": [{"role": "user", "content": "word " * 5000}]}), 400, "messages")
        self.assert_error(http("POST", url, {"model": self.model, "messages": msgs, "response_format": {"type": "json_schema"}}), 400)
        self.assert_error(http("POST", url, b"x" * (33 << 20)), 413)
        self.assert_error(http("GET", url), 405)
        self.assert_error(http("GET", self.base + "/v1/nothing"), 404)
        # The server is still fine.
        self.assertEqual(http("GET", self.base + "/health")[0], 200)

    def test_qwen2_5_vl_serves_text_chats(self):
        """A Qwen2.5-VL checkpoint (its real architecture and config layout, vision tower included) serves text chats
        on its language model. This folder keeps the tokenizer's tool-calling template, which reads `content` as a
        string, so it cannot render image parts; image and video chats are test_vision_serving.py's, on a folder
        with the processor's template. Here an image part is a 400 from the template (rendered before any media is
        fetched)."""
        vl = self.served.name("qwen2.5-vl")
        url = self.base + "/v1/chat/completions"
        status, body = http("POST", url, {"model": vl, "max_tokens": 4, "ignore_eos": True, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Describe a cat."}]}]})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 4)
        status, body = http("POST", url, {"model": vl, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
        self.assertEqual(status, 400, body)
        self.assertIn("the chat template rejected the messages", json.loads(body)["error"]["message"])

    def test_pipelined_and_slow_clients(self):
        body = json.dumps({"model": self.model, "prompt": "hi", "max_tokens": 1}).encode()
        req = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        s = socket.create_connection(("127.0.0.1", self.served.daemon.http_port), timeout=60)
        s.sendall(req * 3)
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3)
        slow = socket.create_connection(("127.0.0.1", self.served.daemon.http_port), timeout=60)
        slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never more
        self.assertEqual(http("GET", self.base + "/health")[0], 200)
        slow.close()

    def test_load_with_disconnects_frees_everything(self):
        """256 concurrent streams, a third of them dropped mid-way: afterwards no KV block or connection is left."""
        port = self.served.daemon.http_port
        rng = random.Random(7)

        def one(i):
            body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": f"request {i}"}],
                               "max_tokens": 6, "stream": True, "ignore_eos": True}).encode()
            s = socket.create_connection(("127.0.0.1", port), timeout=300)
            s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            drop = rng.random() < 0.33
            data = b""
            try:
                while b"[DONE]" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if drop and b"data:" in data:
                        break
            finally:
                s.close()
            return drop or b"[DONE]" in data

        with concurrent.futures.ThreadPoolExecutor(max_workers=256) as pool:
            results = list(pool.map(one, range(256)))
        self.assertTrue(all(results))
        deadline = time.time() + 120
        while time.time() < deadline:
            text = http("GET", self.base + "/metrics")[1]
            if (metric(text, "vllm:kv_cache_usage_perc", self.model) == 0
                    and metric(text, "vllm:num_requests_running", self.model) == 0
                    and metric(text, "bmserver:http_open_connections") <= 1):
                break
            time.sleep(0.5)
        self.assertEqual(metric(text, "vllm:kv_cache_usage_perc", self.model), 0.0, text)
        self.assertEqual(metric(text, "vllm:num_requests_running", self.model), 0)
        self.assertLessEqual(metric(text, "bmserver:http_open_connections"), 1)


class ServingLifecycleTest(unittest.TestCase):
    def test_serve_errors_stop_and_restart_persistence(self):
        import tempfile
        root = tempfile.mkdtemp(prefix="bm-life-")
        model = make_tiny_model(root)
        d = Daemon().start()
        try:
            probe = d.cli("chat", "serve", model, "--backend", "cpu")
            if probe.returncode != 0 and "no engine runtime yet" in probe.stderr:
                self.assertEqual(len(probe.stderr.strip().splitlines()), 1)
                self.skipTest("this build has no engine runtime yet: " + probe.stderr.strip())
            d.cli("chat", "stop", os.path.basename(model))
            bad = d.cli("chat", "serve", os.path.join(root, "missing"), "--backend", "cpu")
            self.assertNotEqual(bad.returncode, 0)
            self.assertEqual(len(bad.stderr.strip().splitlines()), 1, bad.stderr)
            ok = d.cli("chat", "serve", model, "--backend", "cpu", "--api-key", "k3y", "--kv-cache-bytes", str(16 << 20))
            self.assertEqual(ok.returncode, 0, ok.stderr + d.read_log())
            self.assertIn("Serving", ok.stdout)
            again = d.cli("chat", "serve", model, "--backend", "cpu")
            self.assertNotEqual(again.returncode, 0)
            self.assertIn("already served", again.stderr)
            base = f"http://127.0.0.1:{d.http_port}"
            name = os.path.basename(model)
            body = {"model": name, "prompt": "hi", "max_tokens": 1}
            self.assertEqual(http("POST", base + "/v1/completions", body)[0], 401)
            self.assertEqual(http("POST", base + "/v1/completions", body, {"Authorization": "Bearer k3y"})[0], 200)
            # Restart: the model is served again.
            self.assertEqual(d.stop(), 0)
            d2 = Daemon(workdir=d.workdir, http_port=d.http_port).start()
            try:
                deadline = time.time() + 120
                while time.time() < deadline and http("GET", base + "/health")[0] != 200:
                    time.sleep(0.2)
                names = [m["name"] for m in d2.cli_json("chat", "ps")["models"]]
                self.assertIn(name, names)
                self.assertEqual(http("POST", base + "/v1/completions", body, {"Authorization": "Bearer k3y"})[0], 200)
                stop = d2.cli("chat", "stop", name)
                self.assertEqual(stop.returncode, 0, stop.stderr)
                self.assertEqual(d2.cli_json("chat", "ps")["models"], [])
                self.assertEqual(http("POST", base + "/v1/completions", body, {"Authorization": "Bearer k3y"})[0], 404)
                self.assertNotEqual(d2.cli("chat", "stop", name).returncode, 0)
            finally:
                d2.close(remove=False)
        finally:
            d.close()

    def test_threads_and_kv_cache_dtype(self):
        import tempfile
        root = tempfile.mkdtemp(prefix="bm-kvdt-")
        model = make_tiny_model(root)
        name = os.path.basename(model)
        d = Daemon().start()
        try:
            base = f"http://127.0.0.1:{d.http_port}"
            body = {"model": name, "prompt": "hi", "max_tokens": 2}
            capacity = {}
            for dtype in ("float32", "bfloat16"):
                ok = d.cli("chat", "serve", model, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20),
                           "--kv-cache-dtype", dtype, "--threads", "1")
                self.assertEqual(ok.returncode, 0, ok.stderr + d.read_log())
                [m] = d.cli_json("chat", "ps")["models"]
                self.assertEqual(m["options"]["kv_cache_dtype"], dtype)
                self.assertEqual(m["options"]["threads"], 1)
                capacity[dtype] = int(m["kv_capacity_tokens"])
                self.assertEqual(http("POST", base + "/v1/completions", body)[0], 200)
                self.assertEqual(d.cli("chat", "stop", name).returncode, 0)
            # The same bytes hold twice the tokens in bfloat16 (whole blocks of 16 tokens either way).
            self.assertLessEqual(abs(capacity["bfloat16"] - 2 * capacity["float32"]), 16)
            # Bad values: one sentence each, non-zero, nothing served.
            too_many = str(len(os.sched_getaffinity(0)) + 1)
            for args, words in ((["--threads", "0"], "--threads"), (["--threads", too_many], "affinity mask"),
                                (["--kv-cache-dtype", "int4"], "--kv-cache-dtype"),
                                (["--extra-params", "--kv-cache-dtype fp8"], "fp8")):
                bad = d.cli("chat", "serve", model, "--backend", "cpu", *args)
                self.assertNotEqual(bad.returncode, 0, args)
                self.assertEqual(len(bad.stderr.strip().splitlines()), 1, bad.stderr)
                self.assertIn(words, bad.stderr)
            self.assertEqual(d.cli_json("chat", "ps")["models"], [])
        finally:
            d.close()

    def test_tensor_parallel_on_cpu_ranks(self):
        """`--tensor-parallel-size 2` splits the model over two CPU ranks (docs/tensor-parallel.md): the same greedy
        completion and logprobs as one rank, through the front door; the ranks show in `chat ps`; a size that does
        not divide the heads is one sentence and serves nothing."""
        import tempfile
        root = tempfile.mkdtemp(prefix="bm-tp-")
        model = make_tiny_model(root)
        name = os.path.basename(model)
        d = Daemon().start()
        try:
            base = f"http://127.0.0.1:{d.http_port}"
            body = {"model": name, "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0,
                    "logprobs": 2}
            out, capacity = {}, {}
            for tp in ("1", "2"):
                # --kv-cache-bytes is per rank: each rank holds its share of the 2 KV heads of every token, so two
                # ranks hold twice the tokens (the capacity the benchmark's maximum concurrency is computed from).
                ok = d.cli("chat", "serve", model, "--backend", "cpu", "--threads", "2", "--kv-cache-dtype",
                           "float32", "--tensor-parallel-size", tp, "--kv-cache-bytes", str(4 << 20))
                self.assertEqual(ok.returncode, 0, ok.stderr + d.read_log())
                [m] = d.cli_json("chat", "ps")["models"]
                self.assertEqual(m["options"]["tensor_parallel_size"], int(tp))
                self.assertEqual(m["tensor_parallel_size"], int(tp))
                # Per rank: its device (CPU ranks), weights and KV share; the model's figures are their sums.
                ranks = m["ranks"]
                self.assertEqual([r.get("rank", 0) for r in ranks], list(range(int(tp))))
                self.assertTrue(all(r["gpu"] == -1 for r in ranks))
                self.assertEqual(sum(int(r["weight_bytes"]) for r in ranks), int(m["weight_bytes"]))
                self.assertEqual(sum(int(r["kv_cache_bytes"]) for r in ranks), int(m["kv_cache_bytes"]))
                self.assertTrue(all(int(r["kv_cache_bytes"]) == int(ranks[0]["kv_cache_bytes"]) for r in ranks))
                if tp == "2":  # rank 0 alone holds the lm_head (tied here: the embedding both hold), not less
                    self.assertGreaterEqual(int(ranks[0]["weight_bytes"]), int(ranks[1]["weight_bytes"]))
                    table = d.cli("chat", "ps").stdout
                    self.assertIn("cpu x2", table)
                    self.assertIn(f"{name}: 2 tensor-parallel ranks", table)
                capacity[tp] = int(m["kv_capacity_tokens"])
                status, reply = http("POST", base + "/v1/completions", body)
                self.assertEqual(status, 200, reply)
                out[tp] = json.loads(reply)["choices"][0]
                self.assertEqual(d.cli("chat", "stop", name).returncode, 0)
            self.assertEqual(out["1"]["text"], out["2"]["text"])
            for a, b in zip(out["1"]["logprobs"]["token_logprobs"], out["2"]["logprobs"]["token_logprobs"]):
                self.assertAlmostEqual(a, b, delta=1e-4)
            self.assertEqual(capacity["2"], 2 * capacity["1"])
            # A GPTQ-Int4 model splits too (docs/quantization.md): the same greedy completion on two ranks.
            quantized = make_tiny_model(root, quantization="gptq-int4")
            qname = os.path.basename(quantized)
            qbody = {"model": qname, "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}
            texts = []
            for tp in ("1", "2"):
                ok = d.cli("chat", "serve", quantized, "--backend", "cpu", "--threads", "2", "--tensor-parallel-size",
                           tp, "--kv-cache-bytes", str(4 << 20))
                self.assertEqual(ok.returncode, 0, ok.stderr + d.read_log())
                status, reply = http("POST", base + "/v1/completions", qbody)
                self.assertEqual(status, 200, reply)
                texts.append(json.loads(reply)["choices"][0]["text"])
                self.assertEqual(d.cli("chat", "stop", qname).returncode, 0)
            self.assertEqual(texts[0], texts[1])
            bad = d.cli("chat", "serve", model, "--backend", "cpu", "--threads", "2", "--tensor-parallel-size", "3")
            self.assertNotEqual(bad.returncode, 0)
            self.assertEqual(len(bad.stderr.strip().splitlines()), 1, bad.stderr)
            self.assertIn("attention heads", bad.stderr)
            self.assertEqual(d.cli_json("chat", "ps")["models"], [])
        finally:
            d.close()

    def test_stop_aborts_streams_in_flight_and_the_daemon_stays_up(self):
        """`chat stop` while streams run: they end with finish_reason "abort" and [DONE], memory is freed at once,
        and the daemon survives the sessions letting go of the model on the engine's thread (it used to join
        itself there and abort the process). Repeated, since that last release is a race."""
        import tempfile
        root = tempfile.mkdtemp(prefix="bm-stop-")
        model = make_tiny_model(root)
        name = os.path.basename(model)
        d = Daemon().start()
        try:
            for attempt in range(3):
                ok = d.cli("chat", "serve", model, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20))
                self.assertEqual(ok.returncode, 0, ok.stderr + d.read_log())
                body = json.dumps({"model": name, "prompt": "count", "max_tokens": 4000, "ignore_eos": True,
                                   "stream": True}).encode()
                streams = []
                for _ in range(6):
                    s = socket.create_connection(("127.0.0.1", d.http_port), timeout=120)
                    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                               f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
                    streams.append(s)
                heads = []
                for s in streams:  # every stream has produced a token before the stop
                    data = b""
                    while b"data:" not in data:
                        chunk = s.recv(65536)
                        self.assertTrue(chunk, b"a stream closed before its first token: " + data)
                        data += chunk
                    heads.append(data)
                stop = d.cli("chat", "stop", name)
                self.assertEqual(stop.returncode, 0, stop.stderr + d.read_log())
                for s, data in zip(streams, heads):
                    while b"[DONE]" not in data:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    s.close()
                    compact = data.replace(b" ", b"")
                    self.assertTrue(b"[DONE]" in data and b'"finish_reason":"abort"' in compact,
                                    f"a stream did not end aborted: ...{compact[-400:]!r}")
                self.assertIsNone(d.proc.poll(), f"the daemon died on attempt {attempt}: {d.read_log()[-3000:]}")
                self.assertEqual(d.cli_json("chat", "ps")["models"], [])
                self.assertEqual(http("GET", f"http://127.0.0.1:{d.http_port}/health")[0], 200)
        finally:
            d.close()


if __name__ == "__main__":
    unittest.main()
