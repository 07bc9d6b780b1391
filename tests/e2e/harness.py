"""End-to-end harness: starts the real bmserverd on a temporary socket and state dir, drives it with the real
bmserver. Standard library only (unittest), so these tests need no venv; tests that need the Python reference
tools use BMSERVER_PYTHON (the venv's interpreter) through `venv_python()`.

Environment (set by ctest): BMSERVER_BIN_DIR (where bmserverd and bmserver are), BMSERVER_SOURCE_DIR,
BMSERVER_SHARED_DIR, BMSERVER_PYTHON.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BIN_DIR = os.environ.get("BMSERVER_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build", "cpu", "bin"))
SOURCE_DIR = os.environ.get("BMSERVER_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
SHARED_DIR = os.environ.get("BMSERVER_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))


def binary(name):
    return os.path.join(BIN_DIR, name)


def venv_python():
    """The interpreter of the venv with the reference tools, or None."""
    py = os.environ.get("BMSERVER_PYTHON", "")
    return py if py and os.path.exists(py) else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One bmserverd on a private socket and state dir; stopped (SIGTERM) on close."""

    def __init__(self, workdir=None, extra_args=(), env=None, http_port=None):
        self.workdir = workdir or tempfile.mkdtemp(prefix="bm-e2e-")
        self.socket_path = os.path.join(self.workdir, "bmserverd.sock")
        self.state_dir = os.path.join(self.workdir, "state")
        self.address = "unix:" + self.socket_path
        self.http_port = http_port or free_port()
        self.env = dict(os.environ)
        self.env.pop("XDG_RUNTIME_DIR", None)  # never touch the developer's own user-mode daemon
        self.env.update(env or {})
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.workdir, "bmserverd.log")

    def args(self):
        return [binary("bmserverd"), "--listen", self.address, "--state-dir", self.state_dir,
                "--http-listen", f"127.0.0.1:{self.http_port}", "--log-level", "debug"] + self.extra_args

    def start(self, wait=True, timeout=30):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bmserverd exited with {self.proc.returncode}: {self.read_log()}")
            if os.path.exists(self.socket_path):
                r = self.cli("--version")
                if "bmserverd" in r.stdout and "not reachable" not in r.stdout:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"bmserverd did not become ready in {timeout}s: {self.read_log()}")

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def cli(self, *args, input=None, timeout=120, env=None):
        run_env = dict(self.env)
        run_env.update(env or {})
        return subprocess.run([binary("bmserver"), "--daemon", self.address, *args], input=input,
                              capture_output=True, text=True, timeout=timeout, env=run_env)

    def cli_json(self, *args, **kw):
        r = self.cli(*args, "-o", "json", **kw)
        if r.returncode != 0:
            raise AssertionError(f"bmserver {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return json.loads(r.stdout)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.log.close()

    def close(self, remove=True):
        self.stop()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)


class DaemonTestCase(unittest.TestCase):
    """A fresh daemon per test, in self.daemon."""

    daemon_env = None
    daemon_args = ()

    def setUp(self):
        self.daemon = Daemon(env=self.daemon_env, extra_args=self.daemon_args).start()

    def tearDown(self):
        rc = self.daemon.stop()
        log = self.daemon.read_log()
        self.daemon.close()
        self.assertIn(rc, (0, None), f"bmserverd did not exit cleanly ({rc}):\n{log}")
