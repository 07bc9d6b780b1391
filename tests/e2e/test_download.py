"""chat download / chat update end to end: the real bmserverd downloads from tests/tools/fake_hub.py (a Hugging
Face + ModelScope server on loopback) while the real bmserver renders the progress. Standard library only; the
huggingface_hub interop check uses BMSERVER_PYTHON when it is set."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from harness import SOURCE_DIR, Daemon, binary, venv_python

NAME = "qwen2.5-0.5b-origin"
REPO = "Qwen/Qwen2.5-0.5B-Instruct"
WEIGHT_BYTES = 3_000_000
TOKEN = "hf_e2e_token"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class FakeHub:
    def __init__(self, workdir):
        port_file = os.path.join(workdir, "hub.port")
        self.proc = subprocess.Popen([sys.executable, os.path.join(SOURCE_DIR, "tests", "tools", "fake_hub.py"),
                                      "--port-file", port_file, "--token", TOKEN])
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("fake_hub.py did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            self.url = f"http://127.0.0.1:{f.read().strip()}"

    def post(self, path, body):
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def push(self, files):
        return self.post("/_control/repo", {"repo": REPO, "files": files})["commit"]

    def faults(self, faults):
        self.post("/_control/faults", faults)

    def stats(self):
        with urllib.request.urlopen(self.url + "/_control/stats") as response:
            return json.loads(response.read())

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def tiny_files(seed=1):
    return {"config.json": '{"model_type": "qwen2"}', "model.safetensors": {"size": WEIGHT_BYTES, "seed": seed},
            "tokenizer_config.json": "{}"}


class HubCase(unittest.TestCase):
    """A fake hub with the tiny model and a daemon downloading from it, each in a fresh folder."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="bm-e2e-dl-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.workdir])
        self.hub = FakeHub(self.workdir)
        self.addCleanup(self.hub.close)
        self.commit = self.hub.push(tiny_files())
        self.hf_cache = os.path.join(self.workdir, "hf")
        self.ms_cache = os.path.join(self.workdir, "ms")
        self.env = {"HF_ENDPOINT": self.hub.url, "HF_TOKEN": TOKEN, "HF_HUB_CACHE": self.hf_cache,
                    "HF_HOME": os.path.join(self.workdir, "hf_home"), "MODELSCOPE_DOMAIN": self.hub.url,
                    "MODELSCOPE_API_TOKEN": TOKEN, "MODELSCOPE_CACHE": self.ms_cache, "BMSERVER_HUB": "hf"}
        self.daemon = Daemon(workdir=self.subdir("daemon"), env=self.env).start()
        self.addCleanup(self.daemon.close)

    def subdir(self, name):
        path = os.path.join(self.workdir, name)
        os.makedirs(path, exist_ok=True)
        return path

    def repo_dir(self):
        return os.path.join(self.hf_cache, "models--Qwen--Qwen2.5-0.5B-Instruct")

    def incomplete(self):
        return glob.glob(os.path.join(self.repo_dir(), "blobs", "*.incomplete"))

    def start_download(self, *args):
        return subprocess.Popen([binary("bmserver"), "--daemon", self.daemon.address, "chat", "download", NAME, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for_partial(self, at_least):
        deadline = time.time() + 30
        while time.time() < deadline:
            files = self.incomplete()
            if files and os.path.getsize(files[0]) >= at_least:
                return
            time.sleep(0.05)
        self.fail("the download never wrote a partial file")


class DownloadTest(HubCase):
    def test_download_streams_json_progress_and_writes_the_cache(self):
        r = self.daemon.cli("chat", "download", NAME, "-o", "json")
        self.assertEqual(r.returncode, 0, r.stderr)
        events = [json.loads(line) for line in r.stdout.splitlines()]
        phases = [e["phase"] for e in events]
        self.assertEqual(phases[0], "resolving")
        self.assertIn("downloading", phases)
        self.assertEqual(phases[-1], "done")
        last = events[-1]
        self.assertEqual(last["commit"], self.commit)
        self.assertEqual(int(last["bytes_total"]), WEIGHT_BYTES + len('{"model_type": "qwen2"}') + 2)
        self.assertEqual(last["files_done"], 3)
        self.assertEqual(last["snapshot_path"], os.path.join(self.repo_dir(), "snapshots", self.commit))
        with open(os.path.join(self.repo_dir(), "refs", "main")) as f:
            self.assertEqual(f.read(), self.commit)
        self.assertEqual(os.path.getsize(os.path.join(last["snapshot_path"], "model.safetensors")), WEIGHT_BYTES)
        self.assertEqual(self.hub.stats()["auth_leaks"], 0)

    def test_plain_output_when_not_a_terminal(self):
        r = self.daemon.cli("chat", "download", NAME)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"{REPO} downloaded at {self.commit}", r.stdout)
        self.assertNotIn("\r", r.stdout)

    def test_unknown_name_lists_close_names(self):
        r = self.daemon.cli("chat", "download", "qwen2.5-0.5b-orign")
        self.assertEqual(r.returncode, EXIT_USAGE, r.stdout)
        self.assertIn("did you mean", r.stderr)
        self.assertIn(NAME, r.stderr)

    def test_bad_token_names_hf_token(self):
        r = self.daemon.cli("chat", "download", NAME, env={})
        self.assertEqual(r.returncode, 0, r.stderr)  # the daemon's token, not the CLI's, is used
        daemon = Daemon(workdir=self.subdir("d2"), env=dict(self.env, HF_TOKEN="wrong")).start()
        try:
            r = daemon.cli("chat", "download", NAME)
            self.assertEqual(r.returncode, EXIT_FAILED)
            self.assertIn("HF_TOKEN", r.stderr)
        finally:
            daemon.close()

    def test_kill_9_mid_download_then_resume_without_refetching(self):
        self.hub.faults([{"path": "model.safetensors", "kind": "stall", "after": 1_000_000, "seconds": 60, "times": 1}])
        cli = self.start_download()
        self.wait_for_partial(1_000_000)
        self.daemon.proc.send_signal(signal.SIGKILL)
        self.daemon.proc.wait()
        cli.wait(timeout=30)
        self.assertNotEqual(cli.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "refs", "main")))
        self.daemon.start()
        r = self.daemon.cli("chat", "download", NAME)
        self.assertEqual(r.returncode, 0, r.stderr + self.daemon.read_log())
        self.assertEqual(self.hub.stats()["bytes_served"]["model.safetensors"], WEIGHT_BYTES)
        self.assertEqual(self.incomplete(), [])

    def test_ctrl_c_cancels_in_the_daemon_and_keeps_partial_data(self):
        self.hub.faults([{"path": "model.safetensors", "kind": "stall", "after": 1_000_000, "seconds": 60, "times": 1}])
        cli = self.start_download()
        self.wait_for_partial(1_000_000)
        cli.send_signal(signal.SIGINT)
        cli.wait(timeout=30)
        self.assertEqual(cli.returncode, EXIT_INTERRUPTED, cli.stderr.read())
        self.assertTrue(self.incomplete())
        r = self.daemon.cli("chat", "download", NAME)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hub.stats()["bytes_served"]["model.safetensors"], WEIGHT_BYTES)

    def test_update_fetches_the_new_commit_and_says_what_changed(self):
        self.assertEqual(self.daemon.cli("chat", "download", NAME).returncode, 0)
        new_commit = self.hub.push(dict(tiny_files(seed=2), **{"generation_config.json": "{}"}))
        r = self.daemon.cli("chat", "update", "qwen2.5-0.5b-*", "-y")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"updated at {new_commit}", r.stdout)
        self.assertIn("1 added, 1 changed, 0 removed", r.stdout)
        with open(os.path.join(self.repo_dir(), "refs", "main")) as f:
            self.assertEqual(f.read(), new_commit)
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "snapshots", self.commit)))
        r = self.daemon.cli("chat", "update", "-y")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("is up to date", r.stdout)

    def test_modelscope_download(self):
        r = self.daemon.cli("chat", "download", NAME, "--hub", "ms")
        self.assertEqual(r.returncode, 0, r.stderr)
        snapshot = os.path.join(self.ms_cache, "models", "Qwen--Qwen2.5-0.5B-Instruct", "snapshots", "master")
        self.assertEqual(os.path.getsize(os.path.join(snapshot, "model.safetensors")), WEIGHT_BYTES)

    def test_local_dir_layout(self):
        store = os.path.join(self.workdir, "store")
        r = self.daemon.cli("chat", "download", NAME, "--local-dir", store)
        self.assertEqual(r.returncode, 0, r.stderr)
        model = os.path.join(store, REPO)
        self.assertTrue(os.path.isfile(os.path.join(model, "config.json")))
        self.assertTrue(os.path.isfile(os.path.join(model, ".cache", "huggingface", "download", "config.json.metadata")))

    def test_huggingface_hub_loads_our_download_offline(self):
        python = venv_python()
        if python is None:
            self.skipTest("BMSERVER_PYTHON is not set: huggingface_hub interop not checked")
        self.assertEqual(self.daemon.cli("chat", "download", NAME).returncode, 0)
        code = ("import huggingface_hub as h\n"
                f"print(h.snapshot_download('{REPO}', local_files_only=True))\n"
                "print(len(h.scan_cache_dir().warnings))\n")
        env = dict(os.environ, HF_HUB_CACHE=self.hf_cache, HF_HUB_OFFLINE="1", HF_HOME=self.env["HF_HOME"])
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        path, warnings = r.stdout.split()
        self.assertEqual(path, os.path.join(self.repo_dir(), "snapshots", self.commit))
        self.assertEqual(warnings, "0")


class HostileHubTest(HubCase):
    """Nothing a hub says is trusted (DESIGN §9): each hostile answer fails the download with one sentence naming
    the field, writes nothing outside the cache, and leaves the daemon serving."""

    STORE_DIRS = ("hf", "ms", "daemon", "hf_home")

    def written_outside_the_store(self):
        found = []
        for dirpath, dirnames, filenames in os.walk(self.workdir):
            rel = os.path.relpath(dirpath, self.workdir)
            top = rel.split(os.sep)[0]
            if top in self.STORE_DIRS:
                continue
            found += [os.path.join(rel, name) for name in filenames if not name.startswith("hub.port")]
            found += [os.path.join(rel, name) for name in dirnames if name not in self.STORE_DIRS]
        return found

    def assert_daemon_alive(self):
        self.assertIsNone(self.daemon.proc.poll(), self.daemon.read_log())
        r = self.daemon.cli("--version")
        self.assertIn("bmserverd", r.stdout, r.stderr)

    def assert_refused(self, message, *args):
        r = self.daemon.cli("chat", "download", NAME, *args)
        self.assertEqual(r.returncode, EXIT_FAILED, r.stdout + r.stderr)
        self.assertIn(f"bmserver: {message}\n", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.repo_dir(), "refs", "main")))
        self.assertEqual(self.written_outside_the_store(), [])
        self.assert_daemon_alive()

    def test_oid_with_dotdot_is_refused(self):
        self.hub.faults([{"kind": "tree_entry", "path": "config.json", "set": {"oid": "../../../../escaped"}}])
        self.assert_refused(f'{self.hub.url} lists {REPO} "config.json" with "oid" "../../../../escaped" that is not '
                            'a 40-hex git blob sha1 (lower-case)')

    def test_size_that_is_a_string_does_not_take_the_daemon_down(self):
        self.hub.faults([{"kind": "tree_entry", "path": "config.json", "set": {"size": "23"}}])
        self.assert_refused(f'{self.hub.url} lists {REPO} "config.json" with "size" "23" that is not a byte count')

    def test_revision_info_without_a_commit_is_refused(self):
        self.hub.faults([{"kind": "revision_info", "set": {"sha": ["../x"]}}])
        self.assert_refused(f'{self.hub.url} gave "sha" "[\\"../x\\"]" for {REPO}@"main" where a 40-hex commit '
                            'belongs; is it a Hugging Face endpoint?')

    def test_name_with_dotdot_is_refused_on_modelscope(self):
        self.hub.faults([{"kind": "ms_entry", "path": "config.json", "set": {"Path": "../../escaped"}}])
        self.assert_refused(f'{self.hub.url} lists {REPO} file entry 0 with "Path" "../../escaped" that is an unsafe '
                            'file name', "--hub", "ms")

    def test_file_redirect_is_refused(self):
        self.hub.faults([{"kind": "redirect", "path": "resolve:config.json", "times": -1,
                          "location": "file:///etc/passwd"}])
        self.assert_refused(f'{self.hub.url} redirected {self.hub.url}/{REPO}/resolve/{self.commit}/config.json to '
                            '"file:///etc/passwd"; only http and https redirects are followed')

    def test_redirect_to_another_port_gets_no_token(self):
        self.hub.faults([{"kind": "redirect", "path": "resolve:config.json", "times": -1,
                          "location": "http://127.0.0.1:{other}/_cdn/{repo}/{sha}/{file}"}])
        r = self.daemon.cli("chat", "download", NAME)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.hub.stats()["auth_leaks"], 0)
        self.assert_daemon_alive()

    def test_endless_pagination_is_refused(self):
        self.hub.faults([{"kind": "tree_link", "mode": "loop"}])
        first = f"{self.hub.url}/api/models/{REPO}/tree/{self.commit}?recursive=True&expand=False&cursor=0"
        self.assert_refused(f"{self.hub.url}'s tree of {REPO} pages in a loop (back to {first})")

    def test_wrong_blob_sha1_is_refused(self):
        self.hub.faults([{"path": "config.json", "kind": "corrupt", "times": -1}])
        r = self.daemon.cli("chat", "download", NAME)
        self.assertEqual(r.returncode, EXIT_FAILED, r.stdout)
        # The fault hits config.json and tokenizer_config.json; whichever fails first is reported.
        self.assertRegex(r.stderr, r"^bmserver: (tokenizer_)?config\.json of " + re.escape(self.hub.url) +
                         r" has git blob sha1 [0-9a-f]{40} where the hub listed [0-9a-f]{40} after 3 tries; the hub, "
                         r"a mirror or a proxy serves corrupt data")
        self.assertEqual(self.written_outside_the_store(), [])
        self.assert_daemon_alive()

    def test_remove_during_a_download_is_refused(self):
        self.hub.faults([{"path": "model.safetensors", "kind": "stall", "after": 1_000_000, "seconds": 60, "times": 1}])
        cli = self.start_download()
        self.wait_for_partial(1_000_000)
        # The download has written config.json already, so the store lists the model (incomplete).
        r = self.daemon.cli("chat", "remove", NAME, "-y")
        self.assertEqual(r.returncode, EXIT_FAILED, r.stdout + r.stderr)
        self.assertIn(f"bmserver: {REPO} is being downloaded; stop that download (Ctrl-C in its `bmserver chat "
                      "download`) or let it finish, then remove it\n", r.stderr)
        self.assertTrue(self.incomplete())
        cli.send_signal(signal.SIGINT)
        cli.wait(timeout=30)
        # The daemon notices the client is gone within a moment and releases the repo.
        deadline = time.time() + 30
        while True:
            r = self.daemon.cli("chat", "remove", NAME, "-y")
            if r.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(self.repo_dir()))
        self.assert_daemon_alive()


class UnreachableHubTest(unittest.TestCase):
    def test_unreachable_hub_names_the_endpoint_and_the_variables(self):
        workdir = tempfile.mkdtemp(prefix="bm-e2e-dl-")
        env = {"HF_ENDPOINT": "http://127.0.0.1:1", "HF_HUB_CACHE": os.path.join(workdir, "hf"), "BMSERVER_HUB": "hf"}
        os.makedirs(os.path.join(workdir, "daemon"))
        daemon = Daemon(workdir=os.path.join(workdir, "daemon"), env=env).start()
        try:
            r = daemon.cli("chat", "download", NAME)
            self.assertEqual(r.returncode, EXIT_FAILED, r.stdout)
            self.assertIn("http://127.0.0.1:1", r.stderr)
            self.assertIn("HF_ENDPOINT", r.stderr)
            self.assertIn("--hub ms", r.stderr)
        finally:
            daemon.close()
            subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    unittest.main()
