"""The daemon's state dir end to end: served.json that is corrupt, wrong-typed or truncated is moved aside and the
daemon starts with nothing restored; a model whose restore fails is listed failed while the others serve; one
daemon per state dir (the second names the first one's pid); the state file is private (0600)."""
import glob
import json
import os
import stat
import subprocess
import time
import unittest

from harness import Daemon, binary
from serving_fixture import http, make_tiny_model

EXIT_FAILED = 1


def write_state(daemon, text):
    os.makedirs(daemon.state_dir, exist_ok=True)
    with open(os.path.join(daemon.state_dir, "served.json"), "w") as f:
        f.write(text)


def served_entry(name, **settings):
    return {"name": name, "settings": {"backend": "cpu", "kv_cache_bytes": 16 << 20, **settings}}


class CorruptStateTest(unittest.TestCase):
    """Each case: the daemon comes up, restores nothing, keeps the bad file as served.json.corrupt-<time>, says so
    in one log line, and serves requests."""

    CASES = {
        "json_garbage": "\x7fELF\x00\x01 not json at all",
        "truncated": '{"version": 1, "served": [{"name": "/models/a", "settings": {"backend": "cp',
        "wrong_types": json.dumps({"version": 1, "served": [{"name": "/models/a", "settings": {"gpus": "0"}}]}),
        "wrong_top_level": json.dumps(["/models/a"]),
        "future_version": json.dumps({"version": 7, "served": []}),
        "empty_file": "",
    }

    def check_moved_aside(self, name, text):
        d = Daemon()
        write_state(d, text)
        d.start()
        try:
            self.assertEqual(d.cli_json("chat", "ps")["models"], [], name)
            aside = glob.glob(os.path.join(d.state_dir, "served.json.corrupt-*"))
            self.assertEqual(len(aside), 1, f"{name}: {os.listdir(d.state_dir)}")
            with open(aside[0]) as f:
                self.assertEqual(f.read(), text, "the bad file is kept as it was")
            self.assertFalse(os.path.exists(os.path.join(d.state_dir, "served.json")))
            log = d.read_log()
            self.assertIn("is not a served-models file this daemon can read", log)
            self.assertIn("nothing restored", log)
            self.assertIn(aside[0], log)
            # Alive and serving: the control plane and the HTTP API answer.
            self.assertEqual(d.cli("env").returncode, 0)
            self.assertEqual(http("GET", f"http://127.0.0.1:{d.http_port}/health")[0], 200)
            self.assertIsNone(d.proc.poll())
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
            d.close()

    def test_json_garbage(self):
        self.check_moved_aside("json_garbage", self.CASES["json_garbage"])

    def test_truncated(self):
        self.check_moved_aside("truncated", self.CASES["truncated"])

    def test_wrong_types(self):
        self.check_moved_aside("wrong_types", self.CASES["wrong_types"])

    def test_wrong_top_level_and_future_version_and_empty(self):
        for name in ("wrong_top_level", "future_version", "empty_file"):
            with self.subTest(name):
                self.check_moved_aside(name, self.CASES[name])

    def test_state_file_that_is_a_directory(self):
        d = Daemon()
        os.makedirs(os.path.join(d.state_dir, "served.json"))
        d.start()
        try:
            self.assertEqual(d.cli_json("chat", "ps")["models"], [])
            self.assertEqual(len(glob.glob(os.path.join(d.state_dir, "served.json.corrupt-*"))), 1)
        finally:
            d.close()


class RestoreFailureTest(unittest.TestCase):
    def test_one_model_fails_to_come_back_while_another_serves(self):
        d = Daemon()
        model = make_tiny_model(d.workdir)
        missing = os.path.join(d.workdir, "deleted-model")
        write_state(d, json.dumps({"version": 1, "served": [served_entry(model, api_key="k3y"),
                                                             served_entry(missing)]}))
        d.start()
        try:
            base = f"http://127.0.0.1:{d.http_port}"
            name = os.path.basename(model)
            deadline = time.time() + 120
            while time.time() < deadline and http("GET", base + "/health")[0] != 200:
                time.sleep(0.2)
            models = {m["name"]: m for m in d.cli_json("chat", "ps")["models"]}
            self.assertEqual(models[name]["state"], "ready", models)
            self.assertEqual(models[missing]["state"], "failed", models)
            self.assertIn("holds no config.json", models[missing]["error"])
            table = d.cli("chat", "ps")
            self.assertIn("failed: ", table.stdout)
            body = {"model": name, "prompt": "hi", "max_tokens": 1}
            self.assertEqual(http("POST", base + "/v1/completions", body, {"Authorization": "Bearer k3y"})[0], 200)
            self.assertEqual(http("POST", base + "/v1/completions", {**body, "model": missing})[0], 503)
            # The failed one is forgotten by `chat stop`; the state file keeps the good one, privately.
            stop = d.cli("chat", "stop", missing)
            self.assertEqual(stop.returncode, 0, stop.stderr)
            state_file = os.path.join(d.state_dir, "served.json")
            with open(state_file) as f:
                served = [e["name"] for e in json.load(f)["served"]]
            self.assertEqual(served, [model])
            self.assertEqual(stat.S_IMODE(os.stat(state_file).st_mode), 0o600, "served.json holds API keys")
        finally:
            self.assertEqual(d.stop(), 0, d.read_log())
            d.close()


class OneDaemonPerStateDirTest(unittest.TestCase):
    def test_second_daemon_on_the_same_state_dir_names_the_first_ones_pid(self):
        first = Daemon().start()
        try:
            # Another socket and port: only the state dir is shared.
            second = Daemon(workdir=first.workdir)
            second.socket_path = os.path.join(first.workdir, "second.sock")
            second.address = "unix:" + second.socket_path
            r = subprocess.run(second.args(), capture_output=True, text=True, timeout=30, env=second.env)
            self.assertEqual(r.returncode, EXIT_FAILED)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertIn(f"state dir {first.state_dir} is in use by another bmserverd (pid {first.proc.pid}", lines[0])
            self.assertFalse(os.path.exists(second.socket_path), "the refused daemon created no socket")
            self.assertEqual(first.cli("env").returncode, 0, "the first daemon is unharmed")
            self.assertIsNone(first.proc.poll())
        finally:
            first.close()

    def test_lock_is_released_by_a_killed_daemon(self):
        d = Daemon().start()
        d.kill()
        d2 = Daemon(workdir=d.workdir).start()
        try:
            self.assertEqual(d2.cli("env").returncode, 0)
        finally:
            d2.close()


if __name__ == "__main__":
    unittest.main()
