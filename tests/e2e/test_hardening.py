"""Issue 14: nothing a client can send crashes bmserverd, exhausts its memory or stalls its other clients.

Every case asserts the exact status (and a word of the message), and that the daemon is alive and serving
afterwards. The model is a tiny random-weight Qwen2.5 with the real tokenizer and template on the CPU backend.
"""
import concurrent.futures
import json
import os
import re
import socket
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from harness import Daemon
from serving_fixture import make_tiny_model

MSGS = [{"role": "user", "content": "x"}]


def request(method, url, body=None, headers=None, timeout=120):
    """(status, headers, text) of one request; body is bytes, or a JSON-serialisable object."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def raw_exchange(port, payload, shutdown_write=False, timeout=30):
    """Sends raw bytes and reads until the server closes or goes quiet; returns what came back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        s.settimeout(3)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def serve_or_fail(daemon, path, *args):
    """Serves a tiny model on the CPU backend; on failure stops the daemon and says why."""
    r = daemon.cli("chat", "serve", path, "--backend", "cpu", *args, timeout=300)
    if r.returncode != 0:
        log = daemon.read_log()
        daemon.close()
        raise RuntimeError(f"serve {path} failed ({r.returncode}): {r.stderr}\n{log}")


def nested(depth):
    return "[" * depth + "]" * depth


class ServedModelCase(unittest.TestCase):
    """One daemon serving one tiny model, shared by the tests of a class."""

    daemon_args = ()
    serve_args = ()

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bm-hard-")
        cls.model_dir = make_tiny_model(cls.root)
        cls.model = os.path.basename(cls.model_dir)
        cls.daemon = Daemon(extra_args=cls.daemon_args).start()
        cls.port = cls.daemon.http_port
        cls.base = f"http://127.0.0.1:{cls.port}"
        serve_or_fail(cls.daemon, cls.model_dir, "--kv-cache-bytes", str(64 << 20), *cls.serve_args)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    def assert_alive(self):
        self.assertIsNone(self.daemon.proc.poll(), "bmserverd exited:\n" + self.daemon.read_log()[-4000:])
        status, _, text = request("GET", self.base + "/health")
        self.assertEqual(status, 200, text)

    def assert_serves(self):
        status, _, text = request("POST", self.base + "/v1/completions",
                                  {"model": self.model, "prompt": "hi", "max_tokens": 2})
        self.assertEqual(status, 200, text)


class HttpBadInputTest(ServedModelCase):
    serve_args = ("--max-num-seqs", "4")

    def chat(self, **fields):
        body = {"model": self.model, "messages": MSGS, "max_tokens": 1}
        body.update(fields)
        return body

    def completion(self, **fields):
        body = {"model": self.model, "prompt": "x", "max_tokens": 1}
        body.update(fields)
        return body

    def cases(self):
        chat, completions = "/v1/chat/completions", "/v1/completions"
        m = self.model
        big_tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}}
                     for i in range(129)]
        deep_schema = {"type": "object"}
        for _ in range(70):
            deep_schema = {"type": "object", "properties": {"a": deep_schema}}
        # (name, method, path, body, headers, status, word in the message or None)
        return [
            # malformed
            ("not json", "POST", chat, b"{not json", {}, 400, "not valid JSON"),
            ("empty body", "POST", chat, b"", {}, 400, None),
            ("array body", "POST", chat, b"[1,2]", {}, 400, "JSON object"),
            ("string body", "POST", chat, b'"s"', {}, 400, "JSON object"),
            ("trailing comma", "POST", chat, b'{"model": "m", }', {}, 400, "not valid JSON"),
            ("invalid utf-8", "POST", chat, b'{"model": "\xff\xfe"}', {}, 400, None),
            ("two documents", "POST", chat, b'{"a":1} {"b":2}', {}, 400, "not valid JSON"),
            ("truncated", "POST", chat, b'{"model": "m", "messages": [', {}, 400, "not valid JSON"),
            # wrong types
            ("model not a string", "POST", chat, {"model": 5, "messages": MSGS}, {}, 400, "model"),
            ("messages a string", "POST", chat, self.chat(messages="hi"), {}, 400, "messages"),
            ("message a number", "POST", chat, self.chat(messages=[5]), {}, 400, "messages[0]"),
            ("role a number", "POST", chat, self.chat(messages=[{"role": 5, "content": "x"}]), {}, 400, "role"),
            ("unknown role", "POST", chat, self.chat(messages=[{"role": "wizard", "content": "x"}]), {}, 400, "wizard"),
            ("content a number", "POST", chat, self.chat(messages=[{"role": "user", "content": 5}]), {}, 400, "content"),
            ("text part without text", "POST", chat,
             self.chat(messages=[{"role": "user", "content": [{"type": "text"}]}]), {}, 400, "text"),
            ("unknown part type", "POST", chat,
             self.chat(messages=[{"role": "user", "content": [{"type": "bogus"}]}]), {}, 400, "bogus"),
            ("n a string", "POST", chat, self.chat(n="two"), {}, 400, "'n'"),
            ("temperature a string", "POST", chat, self.chat(temperature="hot"), {}, 400, "temperature"),
            ("stop a number", "POST", chat, self.chat(stop=5), {}, 400, "stop"),
            ("stop of numbers", "POST", chat, self.chat(stop=[1, 2]), {}, 400, "stop"),
            ("logit_bias a list", "POST", chat, self.chat(logit_bias=[1]), {}, 400, "logit_bias"),
            ("logit_bias key not an id", "POST", chat, self.chat(logit_bias={"abc": 1}), {}, 400, "logit_bias"),
            ("stream a string", "POST", chat, self.chat(stream="yes"), {}, 400, "stream"),
            ("stream_options without stream", "POST", chat, self.chat(stream_options={"include_usage": True}), {},
             400, "stream_options"),
            ("tools a string", "POST", chat, self.chat(tools="x"), {}, 400, "tools"),
            ("tool without function", "POST", chat, self.chat(tools=[{"type": "function"}]), {}, 400, "tool"),
            ("unknown tool_choice", "POST", chat, self.chat(tool_choice="sometimes"), {}, 400, "tool_choice"),
            ("seed a string", "POST", chat, self.chat(seed="1"), {}, 400, "seed"),
            ("max_tokens a float", "POST", chat, self.chat(max_tokens=1.5), {}, 400, "max_tokens"),
            ("stop_token_ids a string", "POST", chat, self.chat(stop_token_ids="1"), {}, 400, "stop_token_ids"),
            # out of range
            ("n zero", "POST", chat, self.chat(n=0), {}, 400, "'n'"),
            ("n 129", "POST", chat, self.chat(n=129), {}, 400, "'n'"),
            ("temperature 3", "POST", chat, self.chat(temperature=3), {}, 400, "temperature"),
            ("top_p zero", "POST", chat, self.chat(top_p=0), {}, 400, "top_p"),
            ("top_p 1.5", "POST", chat, self.chat(top_p=1.5), {}, 400, "top_p"),
            ("max_tokens zero", "POST", chat, self.chat(max_tokens=0), {}, 400, "max_tokens"),
            ("max_tokens past the context", "POST", chat, self.chat(max_tokens=10 ** 7), {}, 400, "context length"),
            ("top_logprobs 21", "POST", chat, self.chat(logprobs=True, top_logprobs=21), {}, 400, "top_logprobs"),
            ("logit_bias value 1000", "POST", chat, self.chat(logit_bias={"1": 1000}), {}, 400, "logit_bias"),
            ("logit_bias id past the vocabulary", "POST", chat, self.chat(logit_bias={"99999999": 1}), {}, 400,
             "logit_bias"),
            ("negative stop token id", "POST", chat, self.chat(stop_token_ids=[-1]), {}, 400, "stop_token_ids"),
            ("min_tokens over max_tokens", "POST", chat, self.chat(min_tokens=5, max_tokens=2), {}, 400, "min_tokens"),
            ("presence_penalty 3", "POST", chat, self.chat(presence_penalty=3), {}, 400, "presence_penalty"),
            ("repetition_penalty 0", "POST", chat, self.chat(repetition_penalty=0), {}, 400, "repetition_penalty"),
            ("prompt ids past the vocabulary", "POST", completions, self.completion(prompt=[[999999999]]), {}, 400,
             "prompt"),
            ("detokenize a negative id", "POST", "/detokenize", {"model": m, "tokens": [-5]}, {}, 400, "tokens"),
            # sizes that multiply
            ("17 stop strings", "POST", chat, self.chat(stop=["s%d" % i for i in range(17)]), {}, 400, "at most 16"),
            ("a 1025-byte stop string", "POST", chat, self.chat(stop=["a" * 1025]), {}, 400, "1024 bytes"),
            ("stop strings over 4096 bytes together", "POST", chat, self.chat(stop=["%02d" % i + "b" * 998
                                                                                   for i in range(16)]), {},
             400, "4096 bytes together"),
            ("129 tools", "POST", chat, self.chat(tools=big_tools), {}, 400, "128 tools"),
            ("2049 logit_bias entries", "POST", chat, self.chat(logit_bias={str(i): 1 for i in range(2049)}), {}, 400,
             "2048 entries"),
            ("n over max_num_seqs", "POST", chat, self.chat(n=5), {}, 400, "--max-num-seqs"),
            ("n x prompts over max_num_seqs", "POST", completions, self.completion(prompt=["a", "b", "c"], n=2), {},
             400, "--max-num-seqs"),
            ("65 prompts", "POST", completions, self.completion(prompt=["p"] * 65), {}, 400, "64 prompts"),
            ("4097 messages", "POST", chat, self.chat(messages=MSGS * 4097), {}, 400, "4096 messages"),
            ("1025 content parts", "POST", chat,
             self.chat(messages=[{"role": "user", "content": [{"type": "text", "text": "t"}] * 1025}]), {}, 400,
             "1024 parts"),
            ("1025 stop_token_ids", "POST", chat, self.chat(stop_token_ids=[1] * 1025), {}, 400, "1024 ids"),
            ("prompt past the context", "POST", chat,
             self.chat(messages=[{"role": "user", "content": "word " * 5000}]), {}, 400, "context length"),
            # deeply nested
            ("200,000 levels as text/plain", "POST", chat,
             ('{"model": "%s", "messages": [{"role": "user", "content": %s}]}' % (m, nested(200000))).encode(),
             {"Content-Type": "text/plain"}, 400, "deeper than 64"),
            ("65 levels in a tool schema", "POST", chat,
             self.chat(tools=[{"type": "function", "function": {"name": "f", "parameters": deep_schema}}]), {}, 400,
             "deeper than 64"),
            ("deep chat_template_kwargs", "POST", chat,
             ('{"model": "%s", "messages": [], "chat_template_kwargs": {"a": %s}}' % (m, nested(100))).encode(), {},
             400, "deeper than 64"),
            # routes and methods
            ("GET on a POST route", "GET", chat, None, {}, 405, "not allowed"),
            ("DELETE on models", "DELETE", "/v1/models", None, {}, 405, "not allowed"),
            ("POST on models", "POST", "/v1/models", b"{}", {}, 405, "not allowed"),
            ("unknown route", "GET", "/v1/nothing", None, {}, 404, "no route"),
            ("unknown model", "POST", chat, {"model": "nope", "messages": MSGS}, {}, 404, "does not exist"),
            # DNS rebinding: a page's own name, resolved to 127.0.0.1
            ("foreign Host", "POST", chat, self.chat(), {"Host": "evil.example"}, 403, "not allowed"),
            ("foreign Host with port", "GET", "/health", None, {"Host": "evil.example:%d" % self.port}, 403,
             "not allowed"),
        ]

    def test_bad_inputs_get_their_exact_status_and_the_daemon_serves_on(self):
        cases = self.cases()
        self.assertGreaterEqual(len(cases), 60)
        for name, method, path, body, headers, status, word in cases:
            with self.subTest(name):
                got, _, text = request(method, self.base + path, body, headers)
                self.assertEqual(got, status, text[:500])
                error = json.loads(text)["error"]
                self.assertEqual(error["code"], status)
                if word is not None:
                    self.assertIn(word, error["message"])
                self.assertIsNone(self.daemon.proc.poll(), "bmserverd died on " + name)
        self.assert_alive()
        self.assert_serves()

    def test_oversized_body_is_413(self):
        got, _, text = request("POST", self.base + "/v1/chat/completions", b"x" * (33 << 20))
        self.assertEqual(got, 413, text[:300])
        self.assert_alive()

    def test_tool_call_arguments_nested_deep_as_a_string_stay_a_string(self):
        # The arguments string is not parsed past 64 levels; the template renders it as the string it is.
        messages = [{"role": "user", "content": "x"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": nested(100000)}}]},
                    {"role": "tool", "content": "4"}]
        got, _, text = request("POST", self.base + "/tokenize", {"model": self.model, "messages": messages})
        self.assertEqual(got, 200, text[:300])
        self.assert_alive()

    def test_loopback_names_are_served_and_cors_is_off_by_default(self):
        for host in ("localhost:%d" % self.port, "127.0.0.1", "[::1]:%d" % self.port, "127.1.2.3"):
            got, _, text = request("GET", self.base + "/health", headers={"Host": host})
            self.assertEqual(got, 200, host)
        got, headers, _ = request("GET", self.base + "/v1/models", headers={"Origin": "https://evil.example"})
        self.assertEqual(got, 200)
        self.assertNotIn("Access-Control-Allow-Origin", headers)

    def test_raw_protocol_abuse(self):
        p = self.port
        cases = [
            ("garbage request line", b"GARBAGE\r\n\r\n", b"HTTP/1.1 400"),
            ("negative content length", b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
             b"HTTP/1.1 400"),
            ("bad chunk size", b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               b"zz\r\nab\r\n0\r\n\r\n", b"HTTP/1.1 400"),
            ("70 KB of headers", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (70 << 10) + b"\r\n\r\n",
             b"HTTP/1.1 413"),
            ("half-closed mid-body", b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{",
             b""),
        ]
        for name, payload, expect in cases:
            with self.subTest(name):
                data = raw_exchange(p, payload, shutdown_write=True)
                self.assertTrue(data.startswith(expect), data[:200])
                self.assertIsNone(self.daemon.proc.poll())
        # Pipelined: a bad body, a good one, an unknown model — answered in order on one connection.
        def framed(body):
            return (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)) + body
        good = json.dumps({"model": self.model, "prompt": "hi", "max_tokens": 1}).encode()
        bad_model = json.dumps({"model": "nope", "prompt": "hi"}).encode()
        data = raw_exchange(p, framed(b"{bad") + framed(good) + framed(bad_model))
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
        self.assertEqual(statuses, [b"400", b"200", b"404"], data[:600])
        self.assert_alive()

    def test_health_answers_while_the_largest_allowed_request_is_prepared(self):
        # A ~30 MiB prompt (under the 32 MiB body limit) keeps a worker busy parsing and tokenizing for seconds;
        # /health is answered by the I/O threads meanwhile. 1 s is the bound, far above the few ms it takes.
        prompt = ("lorem ipsum dolor sit amet, " * (30 << 15))[: 30 << 20]
        body = json.dumps({"model": self.model, "prompt": prompt}).encode()
        done = threading.Event()
        result = {}

        def big():
            result["status"] = request("POST", self.base + "/tokenize", body, timeout=600)[0]
            done.set()

        thread = threading.Thread(target=big)
        thread.start()
        worst = 0.0
        probes = 0
        while not done.is_set():
            start = time.monotonic()
            status, _, _ = request("GET", self.base + "/health", timeout=30)
            worst = max(worst, time.monotonic() - start)
            probes += 1
            self.assertEqual(status, 200)
            time.sleep(0.05)
        thread.join()
        self.assertEqual(result["status"], 200)
        self.assertLess(worst, 1.0, f"/health took {worst:.3f} s at worst over {probes} probes")


class QueueLimitTest(ServedModelCase):
    daemon_args = ("--max-waiting-seqs", "1")
    serve_args = ("--max-num-seqs", "1")

    def test_a_full_queue_answers_503_with_retry_after_and_frees_up(self):
        # One running + one waiting: both streams hold their places until they end; a third request is refused.
        def open_stream():
            body = json.dumps({"model": self.model, "prompt": "go", "max_tokens": 1000, "ignore_eos": True,
                               "stream": True}).encode()
            s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            self.assertIn(b"200 OK", s.recv(4096))
            return s
        streams = [open_stream(), open_stream()]
        try:
            got, headers, text = request("POST", self.base + "/v1/completions",
                                         {"model": self.model, "prompt": "x", "max_tokens": 1})
            self.assertEqual(got, 503, text)
            self.assertEqual(headers.get("Retry-After"), "1")
            self.assertIn("queue limit (2 sequences", json.loads(text)["error"]["message"])
            metrics = request("GET", self.base + "/metrics")[2]
            self.assertIn(f'bmserver:requests_rejected_total{{model_name="{self.model}"}} 1', metrics)
        finally:
            for s in streams:
                s.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            got = request("POST", self.base + "/v1/completions", {"model": self.model, "prompt": "x", "max_tokens": 1})[0]
            if got == 200:
                break
            time.sleep(0.2)
        self.assertEqual(got, 200)


class ConnectionLimitTest(ServedModelCase):
    daemon_args = ("--http-max-connections", "8")

    def test_connections_over_the_limit_get_503_and_room_comes_back(self):
        idle = [socket.create_connection(("127.0.0.1", self.port), timeout=30) for _ in range(8)]
        try:
            time.sleep(0.3)  # all eight accepted and counted
            data = raw_exchange(self.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:200])
            self.assertIn(b"too many open connections", data)
        finally:
            for s in idle:
                s.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request("GET", self.base + "/health", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        self.assert_alive()
        # At least the one above: the health probes may also have been refused while the idle sockets closed.
        refused = re.search(r"^bmserver:http_connections_refused_total (\d+)$", request("GET", self.base + "/metrics")[2],
                            re.M)
        self.assertIsNotNone(refused)
        self.assertGreaterEqual(int(refused.group(1)), 1)


class KeysAndOriginsTest(unittest.TestCase):
    """Two models, one behind a key; CORS for one configured origin."""

    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bm-keys-")
        cls.open_model = make_tiny_model(cls.root, name="open-model")
        cls.secret_model = make_tiny_model(cls.root, name="secret-model")
        cls.daemon = Daemon(extra_args=("--allowed-origins", "https://app.example")).start()
        cls.base = f"http://127.0.0.1:{cls.daemon.http_port}"
        for path, extra in ((cls.open_model, ()), (cls.secret_model, ("--api-key", "sk-test-1234567890"))):
            serve_or_fail(cls.daemon, path, "--kv-cache-bytes", str(32 << 20), *extra)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()

    def test_unknown_model_404_names_only_models_the_key_opens(self):
        body = {"model": "nope", "messages": MSGS}
        got, _, text = request("POST", self.base + "/v1/chat/completions", body)
        self.assertEqual(got, 404)
        message = json.loads(text)["error"]["message"]
        self.assertIn("open-model", message)
        self.assertNotIn("secret-model", message)
        got, _, text = request("POST", self.base + "/v1/chat/completions", body,
                               {"Authorization": "Bearer sk-test-1234567890"})
        self.assertIn("secret-model", json.loads(text)["error"]["message"])
        got, _, _ = request("POST", self.base + "/v1/chat/completions", {"model": "secret-model", "messages": MSGS},
                            {"Authorization": "Bearer sk-test-1234567899"})
        self.assertEqual(got, 401)

    def test_cors_only_for_the_configured_origin(self):
        got, headers, _ = request("GET", self.base + "/v1/models", headers={"Origin": "https://app.example"})
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "https://app.example")
        self.assertEqual(headers.get("Vary"), "Origin")
        got, headers, _ = request("GET", self.base + "/v1/models", headers={"Origin": "https://evil.example"})
        self.assertNotIn("Access-Control-Allow-Origin", headers)
        got, headers, _ = request("OPTIONS", self.base + "/v1/chat/completions",
                                  headers={"Origin": "https://app.example"})
        self.assertEqual(got, 204)
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "https://app.example")


@unittest.skipIf(os.environ.get("BMSERVER_SANITIZED"), "RSS under AddressSanitizer is not the product's")
class MemoryBoundTest(ServedModelCase):
    def test_the_worst_requests_at_once_stay_within_the_stated_bound(self):
        """24 bodies of ~27 MiB at once (near the 32 MiB body limit; each tokenizes to ~6M ids): 660 MiB of bodies.

        The bound, from the limits: request bodies held at once ≤ 256 MiB (max_inflight_body_bytes; bodies that
        do not fit get 503 before they are read), and each of the 2 workers holds at most one request's body,
        parsed copy, token ids and response (≈ 5 × 32 MiB) on top: 256 + 2 × 160 = 576 MiB over the idle daemon,
        plus up to 448 MiB that glibc's per-thread arenas keep after freeing. 1 GiB in all; without the body budget
        the 24 bodies alone take 660 MiB and the peak passes it.
        """
        pid = self.daemon.proc.pid
        before = rss_kib(pid, "VmRSS")
        prompt = ("lorem ipsum dolor sit amet, " * (30 << 15))[: 30 << 20]
        body = json.dumps({"model": self.model, "prompt": prompt}).encode()
        with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
            statuses = list(pool.map(lambda _: request("POST", self.base + "/tokenize", body, timeout=600)[0],
                                     range(24)))
        self.assertTrue(set(statuses) <= {200, 503}, statuses)
        self.assertIn(200, statuses)
        peak = rss_kib(pid, "VmHWM")
        grown_mib = (peak - before) / 1024
        print(f"memory bound: idle RSS {before / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB "
              f"(+{grown_mib:.0f} MiB), statuses {sorted(statuses)}")
        self.assertLess(grown_mib, 1024)
        self.assert_alive()


if __name__ == "__main__":
    unittest.main()
