#!/usr/bin/env python3
"""A small fake OpenAI-compatible server (standard library only) to test the benchmark's load generator apart
from our engine. Tokens: the chat template costs TEMPLATE_TOKENS, then every character of every message is one
token. Streams answer one chunk per token with --token-delay-ms between them, then a usage chunk and [DONE].

usage: fake_openai_server.py [--port 0] [--mode ok|html|no-usage|eos] [--fail-above N] [--token-delay-ms MS]
Prints "PORT <n>" once listening. GET /stats gives {"max_active": …, "num_chat": …} for the tests.
POST /expect {"n": N} makes the next N chat streams wait for one another (up to 30 s) before their first token,
so a test can check that a burst really was open at once (max_active == N) without measuring time.

--mode html        every path answers an HTML page (not an OpenAI server)
--mode no-usage    streams carry no usage chunk
--mode eos         ignore_eos is ignored: every answer stops after 3 tokens
--fail-above N     chat requests beyond N at once get HTTP 503
"""
import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEMPLATE_TOKENS = 10
MODEL = "fake-model"


class State:
    def __init__(self):
        self.lock = threading.Condition()
        self.active = 0
        self.max_active = 0
        self.num_chat = 0
        self.expect = 0
        self.arrived = 0


def count_tokens(messages):
    return TEMPLATE_TOKENS + sum(len(m.get("content", "")) for m in messages)


def make_handler(args, state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send_json(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def html(self):
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def read_body(self):
            n = int(self.headers.get("Content-Length", "0"))
            return json.loads(self.rfile.read(n) or b"{}")

        def do_GET(self):
            if args.mode == "html":
                return self.html()
            if self.path == "/v1/models":
                return self.send_json(200, {"object": "list", "data": [
                    {"id": MODEL, "object": "model", "owned_by": "fake", "max_model_len": 4096}]})
            if self.path == "/metrics":
                with state.lock:
                    usage = min(1.0, state.active / 16)
                text = ("# HELP x\n# TYPE bmserver:kv_cache_usage_perc gauge\n"
                        f'bmserver:kv_cache_usage_perc{{model_name="{MODEL}"}} {usage}\n'
                        'bmserver:kv_cache_usage_perc{model_name="other"} 0.99\n').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                return self.wfile.write(text)
            if self.path == "/stats":
                with state.lock:
                    return self.send_json(200, {"max_active": state.max_active, "num_chat": state.num_chat})
            self.send_json(404, {"error": {"message": "no route"}})

        def do_POST(self):
            if args.mode == "html":
                self.read_body()
                return self.html()
            body = self.read_body()
            if self.path == "/expect":
                with state.lock:
                    state.expect, state.arrived = int(body["n"]), 0
                return self.send_json(200, {})
            if self.path == "/tokenize":
                return self.send_json(200, {"count": count_tokens(body.get("messages", []))})
            if self.path != "/v1/chat/completions":
                return self.send_json(404, {"error": {"message": "no route"}})
            if body.get("model") != MODEL:
                return self.send_json(404, {"error": {"message": f"The model '{body.get('model')}' does not exist."}})
            with state.lock:
                if args.fail_above and state.active >= args.fail_above:
                    overloaded = True
                else:
                    overloaded = False
                    state.active += 1
                    state.num_chat += 1
                    state.max_active = max(state.max_active, state.active)
                    state.arrived += 1
                    state.lock.notify_all()
            if overloaded:
                return self.send_json(503, {"error": {"message": "server overloaded"}})
            try:
                self.stream(body)
            finally:
                with state.lock:
                    state.active -= 1

        def stream(self, body):
            prompt = count_tokens(body.get("messages", []))
            n = int(body.get("max_completion_tokens") or body.get("max_tokens") or 16)
            if args.mode == "eos" or not body.get("ignore_eos"):
                n = min(n, 3)
            with state.lock:
                if state.expect:
                    state.lock.wait_for(lambda: state.arrived >= state.expect, timeout=30)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            created = int(time.time())

            def send(obj):
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\r\n\r\n")
                self.wfile.flush()

            for i in range(n):
                if args.token_delay_ms:
                    time.sleep(args.token_delay_ms / 1000)
                delta = {"content": "x"}
                if i == 0:
                    delta["role"] = "assistant"
                send({"id": "c", "object": "chat.completion.chunk", "created": created, "model": MODEL,
                      "choices": [{"index": 0, "delta": delta, "finish_reason": "length" if i == n - 1 else None}]})
            if args.mode != "no-usage":
                send({"id": "c", "object": "chat.completion.chunk", "created": created, "model": MODEL, "choices": [],
                      "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", default="ok", choices=["ok", "html", "no-usage", "eos"])
    p.add_argument("--fail-above", type=int, default=0)
    p.add_argument("--token-delay-ms", type=float, default=0)
    args = p.parse_args()
    state = State()
    ThreadingHTTPServer.request_queue_size = 1024  # the default backlog of 5 drops a burst of 256 connects
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args, state))
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
