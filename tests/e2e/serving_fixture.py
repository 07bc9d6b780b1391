"""A daemon serving a tiny random-weight model on the CPU backend, shared by the serving tests."""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness import Daemon, SOURCE_DIR, SHARED_DIR, venv_python

TOOLS = os.path.join(SOURCE_DIR, "tests", "tools")


def make_tiny_model(root, flavour="qwen2.5", name=None, quantization=None, tool_args=()):
    out = os.path.join(root, name or f"tiny-{flavour}" + (f"-{quantization}" if quantization else ""))
    py = venv_python() or sys.executable
    extra = (["--quantization", quantization] if quantization else []) + list(tool_args)
    subprocess.run([py, os.path.join(TOOLS, "make_tiny_served_model.py"), out, "--flavour", flavour,
                    "--shared", SHARED_DIR, *extra], check=True, capture_output=True)
    return out


def http(method, url, body=None, headers=None, timeout=120):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class ServedDaemon:
    def __init__(self, flavours=("qwen2.5",), serve_args=()):
        self.root = tempfile.mkdtemp(prefix="bm-serve-")
        self.models = {f: make_tiny_model(self.root, f) for f in flavours}
        self.daemon = Daemon().start()
        self.base = f"http://127.0.0.1:{self.daemon.http_port}"
        for flavour, path in self.models.items():
            r = self.daemon.cli("chat", "serve", path, "--backend", "cpu", "--kv-cache-bytes", str(64 << 20), *serve_args,
                                timeout=300)
            if r.returncode != 0 and "no engine runtime yet" in r.stderr:
                self.daemon.close()
                raise unittest.SkipTest("this build has no engine runtime yet: " + r.stderr.strip())
            if r.returncode != 0:
                raise RuntimeError(f"serve {path} failed ({r.returncode}): {r.stderr}\n{self.daemon.read_log()}")

    def name(self, flavour="qwen2.5"):
        return os.path.basename(self.models[flavour])

    def close(self):
        self.daemon.close()
