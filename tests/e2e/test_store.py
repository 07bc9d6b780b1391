"""The catalog and the model store end to end: bmserverd + bmserver over temporary Hugging Face, ModelScope and
local stores (DESIGN §4). Caches are written in the layouts the Python libraries write (hub-protocols.md §2, §4);
with the venv (BMSERVER_PYTHON) huggingface_hub and modelscope read them back and must agree with us."""
import csv
import fnmatch
import hashlib
import json
import os
import pty
import shutil
import subprocess
import tempfile
import threading
import unittest

from harness import SOURCE_DIR, Daemon, binary, venv_python

EXIT_OK = 0
EXIT_USAGE = 2

COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
OLD_COMMIT = "0f1e2d3c4b5a69788796a5b4c3d2e1f001234567"


def load_catalog():
    """The catalog as the repo ships it (common/catalog/catalog.tsv)."""
    with open(os.path.join(SOURCE_DIR, "common", "catalog", "catalog.tsv"), newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return rows  # quant as the original: "none" for the -origin models


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_hf_repo(cache, repo_id, files, commit=COMMIT, ref=None, missing=(), dangling=()):
    """Writes models--org--name as huggingface_hub does: blobs by etag, relative links in snapshots/<commit>,
    refs/main without a newline. `missing` files get no link at all; `dangling` ones link to a missing blob."""
    repo = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    for path, data in files.items():
        data = data if isinstance(data, bytes) else data.encode()
        etag = hashlib.sha256(data).hexdigest() if len(data) >= 1024 else git_blob_sha1(data)
        blob = os.path.join(repo, "blobs", etag)
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        if path in missing:
            continue
        if path not in dangling:
            with open(blob, "wb") as f:
                f.write(data)
        link = os.path.join(repo, "snapshots", commit, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(commit if ref is None else ref)
    os.makedirs(os.path.join(cache, ".locks", os.path.basename(repo)), exist_ok=True)
    with open(os.path.join(cache, ".locks", os.path.basename(repo), "x.lock"), "w"):
        pass
    return repo


def sharded_model(num_shards=2, shard_bytes=2048):
    shards = {f"model-{i:05d}-of-{num_shards:05d}.safetensors": os.urandom(shard_bytes) for i in range(1, num_shards + 1)}
    index = {"metadata": {"total_size": num_shards * shard_bytes},
             "weight_map": {f"layer.{i}.weight": name for i, name in enumerate(shards)}}
    files = {"config.json": '{"model_type": "qwen2"}', "model.safetensors.index.json": json.dumps(index)}
    files.update(shards)
    return files


def run_venv(script, *args):
    """Runs a snippet with the reference tools; returns its stdout as JSON."""
    r = subprocess.run([venv_python(), "-c", script, *args], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", MODELSCOPE_CACHE=args[0] if args else ""))
    if r.returncode != 0:
        raise AssertionError(f"reference tool failed: {r.stderr}")
    return json.loads(r.stdout)


HF_SCAN = """
import json, sys
from huggingface_hub import scan_cache_dir
info = scan_cache_dir(sys.argv[1])
print(json.dumps({"repos": [{"repo_id": r.repo_id, "size": r.size_on_disk, "nb_files": r.nb_files,
                             "path": str(r.repo_path), "refs": {k: v.commit_hash for k, v in r.refs.items()},
                             "revisions": sorted(v.commit_hash for v in r.revisions)} for r in info.repos],
                  "warnings": [str(w) for w in info.warnings]}))
"""


MS_SCAN = """
import json, sys
from modelscope_hub._cache_manager import scan_cache
print(json.dumps({r.repo_id: [r.size_on_disk, r.nb_files, r.revision] for r in scan_cache(sys.argv[1]).repos}))
"""

MS_OFFLINE_PATH = """
import json, sys
from modelscope import snapshot_download
print(json.dumps(snapshot_download(sys.argv[2], local_files_only=True)))
"""


class StoreTestCase(unittest.TestCase):
    """One daemon for the class; every test starts from empty caches under self.tmp."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bm-store-e2e-")
        cls.hf = os.path.join(cls.tmp, "hf")
        cls.ms = os.path.join(cls.tmp, "ms")
        cls.local = os.path.join(cls.tmp, "local")
        env = {"HF_HUB_CACHE": cls.hf, "MODELSCOPE_CACHE": cls.ms, "BMSERVER_HUB": ""}
        cls.daemon = Daemon(workdir=os.path.join(cls.tmp, "daemon"), env=env)
        os.makedirs(cls.daemon.workdir)
        cls.daemon.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.daemon.stop()
        log = cls.daemon.read_log()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert rc in (0, None), f"bmserverd did not exit cleanly ({rc}):\n{log}"

    def setUp(self):
        for d in (self.hf, self.ms, self.local):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)

    def cli(self, *args, **kw):
        return self.daemon.cli(*args, **kw)

    def rows(self, command, *args):
        out = self.daemon.cli_json("chat", command, *args)
        return {row["entry"]["name"]: row for row in out["rows"]}, out


class SearchTest(StoreTestCase):
    def test_search_lists_the_whole_catalog(self):
        rows, out = self.rows("search")
        catalog = load_catalog()
        self.assertEqual(len(rows), 68)
        self.assertEqual(list(rows), [e["name"] for e in catalog])
        self.assertEqual(out["store_kind"], "hf")
        self.assertEqual(out["store_root"], self.hf)
        self.assertTrue(out["store_root_exists"])
        for entry in catalog:
            row = rows[entry["name"]]
            self.assertFalse(row["downloaded"])
            self.assertEqual(row["repo_id"], entry["hf_repo_id"])
            for key in ("series", "modality", "quant", "tool_call", "reasoning", "hf_repo_id", "ms_repo_id"):
                self.assertEqual(row["entry"][key], entry[key], key)
            self.assertEqual(row["entry"]["size_b"], float(entry["size_b"]))

    def test_each_filter_over_all_68(self):
        catalog = load_catalog()
        for key, flag in (("series", "--series"), ("size_b", "--size"), ("quant", "--quant")):
            for value in sorted({e[key] for e in catalog}):
                arg = f"{float(value):g}B" if key == "size_b" else value
                expected = [e["name"] for e in catalog if e[key] == value]
                rows, _ = self.rows("search", flag, arg)
                self.assertEqual(list(rows), expected, f"{flag} {arg}")
        for pattern in ("qwen2.5-7b-*", "*-awq", "qwq-*", "deepseek-r1-distill-?b-origin", "*coder-[13]*", "none"):
            rows, _ = self.rows("search", pattern)
            self.assertEqual(list(rows), [e["name"] for e in catalog if fnmatch.fnmatchcase(e["name"], pattern)],
                             pattern)
        rows, _ = self.rows("search", "qwen2.5-*", "--size", "7b", "--quant", "awq", "--series", "qwen2.5-vl")
        self.assertEqual(list(rows), ["qwen2.5-vl-7b-awq"])

    def test_pattern_matching_nothing_is_an_empty_table(self):
        for command in ("search", "list"):
            r = self.cli("chat", command, "no-such-model-*")
            self.assertEqual(r.returncode, EXIT_OK, r.stderr)
            self.assertIn("NAME", r.stdout)
            self.assertNotIn("qwen", r.stdout)

    def test_bad_filters_are_refused_with_a_sentence(self):
        r = self.cli("chat", "search", "--quant", "int3")
        self.assertNotEqual(r.returncode, EXIT_OK)
        self.assertIn("int3", r.stderr)
        r = self.cli("chat", "search", "--size", "huge")
        self.assertNotEqual(r.returncode, EXIT_OK)
        self.assertIn("huge", r.stderr)

    def test_table_has_the_original_columns_plus_path(self):
        r = self.cli("chat", "search", "qwq-*")
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        header = r.stdout.splitlines()[0]
        columns = ["NAME", "MODAL", "SERIES", "SIZE", "QUANT", "TOOL CALL", "REASONING", "MODEL ID", "SIZE ON DISK",
                   "PATH"]
        positions = [header.find(c) for c in columns]
        self.assertTrue(all(p >= 0 for p in positions), header)
        self.assertEqual(positions, sorted(positions), header)
        self.assertIn("32.0B", r.stdout)
        self.assertIn("Qwen/QwQ-32B-AWQ", r.stdout)

    def test_hub_ms_uses_modelscope_ids_and_root(self):
        _, out = self.rows("search", "--hub", "ms")
        self.assertEqual(out["store_kind"], "ms")
        self.assertEqual(out["store_root"], self.ms)


class HfCacheTest(StoreTestCase):
    def test_states_of_cached_models(self):
        write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        partial = sharded_model()
        write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct-AWQ", partial,
                      missing=[k for k in partial if k.startswith("model-00002")])
        files = sharded_model()
        files["tokenizer.json"] = "{}"
        write_hf_repo(self.hf, "Qwen/Qwen2.5-1.5B-Instruct", files, dangling=["tokenizer.json"])
        write_hf_repo(self.hf, "Qwen/Qwen2.5-3B-Instruct", sharded_model(), ref=COMMIT + "\n")
        write_hf_repo(self.hf, "Qwen/Qwen2.5-7B-Instruct", sharded_model(), ref="garbage")
        with open(os.path.join(self.hf, "models--Qwen--Qwen2.5-14B-Instruct"), "w") as f:
            f.write("not a folder")
        rows, _ = self.rows("list")
        self.assertEqual(sorted(rows), sorted(["qwen2.5-0.5b-origin", "qwen2.5-0.5b-awq", "qwen2.5-1.5b-origin",
                                               "qwen2.5-3b-origin", "qwen2.5-7b-origin", "qwen2.5-14b-origin"]))
        state = {name: row["stored"]["state"] for name, row in rows.items()}
        self.assertEqual(state["qwen2.5-0.5b-origin"], "downloaded")
        self.assertEqual(state["qwen2.5-0.5b-awq"], "incomplete")
        self.assertEqual(state["qwen2.5-1.5b-origin"], "corrupt")
        self.assertEqual(state["qwen2.5-3b-origin"], "downloaded")  # a trailing newline in refs/main is tolerated
        self.assertEqual(state["qwen2.5-7b-origin"], "corrupt")
        self.assertEqual(state["qwen2.5-14b-origin"], "corrupt")
        self.assertIn("1 of 2 weight files are missing (first: model-00002",
                      rows["qwen2.5-0.5b-awq"]["stored"]["reason"])
        self.assertIn("tokenizer.json", rows["qwen2.5-1.5b-origin"]["stored"]["reason"])
        self.assertTrue(rows["qwen2.5-0.5b-origin"]["downloaded"])
        self.assertFalse(rows["qwen2.5-0.5b-awq"]["downloaded"])
        good = rows["qwen2.5-0.5b-origin"]["stored"]
        self.assertEqual(good["revision"], COMMIT)
        self.assertEqual(good["snapshot_path"], os.path.join(self.hf, "models--Qwen--Qwen2.5-0.5B-Instruct",
                                                             "snapshots", COMMIT))
        self.assertEqual(int(good["num_files"]), 4)
        self.assertGreater(int(good["last_modified_unix"]), 0)
        r = self.cli("chat", "list")
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertIn("(incomplete)", r.stdout)
        self.assertIn("qwen2.5-1.5b-origin is corrupt:", r.stdout)
        # Search marks the same models; the rest of the catalog is not downloaded.
        rows, _ = self.rows("search")
        self.assertEqual(sum(1 for row in rows.values() if row["downloaded"]), 2)

    def test_sizes_agree_with_scan_cache_dir(self):
        write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model(num_shards=3))
        old = sharded_model(num_shards=1)
        old["config.json"] = '{"model_type": "qwen2"}'  # same blob as the new commit: counted once
        write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", old, commit=OLD_COMMIT, ref=COMMIT)
        write_hf_repo(self.hf, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", sharded_model())
        rows, _ = self.rows("list")
        if not venv_python():
            self.skipTest("BMSERVER_PYTHON is not set: cannot compare with huggingface_hub")
        scan = run_venv(HF_SCAN, self.hf)
        self.assertEqual(scan["warnings"], [])
        by_repo = {r["repo_id"]: r for r in scan["repos"]}
        for name, row in rows.items():
            ref = by_repo[row["repo_id"]]
            stored = row["stored"]
            self.assertEqual(int(stored["size_on_disk"]), ref["size"], name)
            self.assertEqual(int(stored["num_files"]), ref["nb_files"], name)
            self.assertEqual(stored["repo_path"], ref["path"], name)
            self.assertEqual(stored["revision"], ref["refs"]["main"], name)

    def test_cache_written_by_huggingface_hub_itself(self):
        if not venv_python():
            self.skipTest("BMSERVER_PYTHON is not set: huggingface_hub is needed to write the cache")
        # huggingface_hub's own cache writers (offline): blobs, relative links, refs.
        script = """
import json, os, sys, hashlib
from huggingface_hub import file_download as fd
cache = sys.argv[1]
storage = os.path.join(cache, fd.repo_folder_name(repo_id="Qwen/QwQ-32B-AWQ", repo_type="model"))
commit = "%s"
files = {"config.json": b"{}", "model.safetensors": os.urandom(4096)}
for name, data in files.items():
    blob = os.path.join(storage, "blobs", hashlib.sha256(data).hexdigest())
    os.makedirs(os.path.dirname(blob), exist_ok=True)
    open(blob, "wb").write(data)
    pointer = os.path.join(storage, "snapshots", commit, name)
    os.makedirs(os.path.dirname(pointer), exist_ok=True)
    fd._create_symlink(blob, pointer, new_blob=False)
fd._cache_commit_hash_for_specific_revision(storage, "main", commit)
print(json.dumps(fd.try_to_load_from_cache("Qwen/QwQ-32B-AWQ", "config.json", cache_dir=cache)))
""" % COMMIT
        found = run_venv(script, self.hf)
        rows, _ = self.rows("list")
        stored = rows["qwq-32b-awq"]["stored"]
        self.assertEqual(stored["state"], "downloaded")
        self.assertEqual(os.path.join(stored["snapshot_path"], "config.json"), found)
        self.assertEqual(int(stored["size_on_disk"]), 4096 + 2)

    def test_store_root_that_does_not_exist_is_empty(self):
        missing = os.path.join(self.tmp, "no", "such", "dir")
        rows, out = self.rows("search", "--local-dir", missing)
        self.assertEqual(len(rows), 68)
        self.assertEqual(out["store_root"], missing)
        self.assertFalse(out["store_root_exists"])
        r = self.cli("chat", "list", "--local-dir", missing)
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertIn(missing + " (does not exist; treated as empty)", r.stdout)

    def test_unreadable_folder_is_corrupt_not_fatal(self):
        if os.geteuid() == 0:
            self.skipTest("root reads every folder")
        repo = write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        os.chmod(os.path.join(repo, "snapshots", COMMIT), 0)
        try:
            rows, _ = self.rows("list")
            self.assertEqual(rows["qwen2.5-0.5b-origin"]["stored"]["state"], "corrupt")
        finally:
            os.chmod(os.path.join(repo, "snapshots", COMMIT), 0o755)


class LocalAndModelScopeTest(StoreTestCase):
    def test_local_store(self):
        model = os.path.join(self.local, "Qwen", "Qwen2.5-7B-Instruct-AWQ")
        os.makedirs(model)
        for name, data in sharded_model().items():
            with open(os.path.join(model, name), "wb") as f:
                f.write(data if isinstance(data, bytes) else data.encode())
        os.makedirs(os.path.join(self.local, "Qwen", "Qwen2.5-7B-Instruct"))  # no config.json: not downloaded
        rel = os.path.relpath(self.local, os.getcwd())
        rows, out = self.rows("list", "--local-dir", rel)
        self.assertEqual(out["store_kind"], "local")
        self.assertEqual(out["store_root"], self.local)
        self.assertEqual(rows["qwen2.5-7b-awq"]["stored"]["state"], "downloaded")
        self.assertEqual(rows["qwen2.5-7b-awq"]["stored"]["snapshot_path"], model)
        self.assertEqual(int(rows["qwen2.5-7b-awq"]["stored"]["size_on_disk"]),
                         sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)))
        self.assertEqual(rows["qwen2.5-7b-origin"]["stored"]["state"], "incomplete")
        r = self.cli("chat", "remove", "qwen2.5-7b-*", "--local-dir", self.local, "-y")
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertEqual(os.listdir(os.path.join(self.local, "Qwen")), [])

    def write_ms_new(self, repo_id, files, revision="master"):
        folder = os.path.join(self.ms, "models", repo_id.replace("/", "--"), "snapshots", revision)
        os.makedirs(folder)
        for name, data in files.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data if isinstance(data, bytes) else data.encode())
        return folder

    def test_modelscope_layouts(self):
        new = self.write_ms_new("Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        classic = os.path.join(self.ms, "models", "Qwen", "Qwen2___5-1___5B-Instruct")
        os.makedirs(classic)
        with open(os.path.join(classic, "config.json"), "w") as f:
            f.write("{}")
        with open(os.path.join(classic, ".mv"), "w") as f:
            f.write("Revision:v1.1.0,CreatedAt:1700000000")
        os.symlink(classic, os.path.join(self.ms, "models", "Qwen", "Qwen2.5-1.5B-Instruct"))
        oldest = os.path.join(self.ms, "Qwen", "Qwen2___5-3B-Instruct")
        os.makedirs(oldest)
        with open(os.path.join(oldest, "config.json"), "w") as f:
            f.write("{}")
        rows, out = self.rows("list", "--hub", "ms")
        self.assertEqual(out["store_root"], self.ms)
        self.assertEqual(sorted(rows), ["qwen2.5-0.5b-origin", "qwen2.5-1.5b-origin", "qwen2.5-3b-origin"])
        self.assertTrue(all(row["downloaded"] for row in rows.values()))
        self.assertEqual(rows["qwen2.5-0.5b-origin"]["stored"]["snapshot_path"], new)
        self.assertEqual(rows["qwen2.5-0.5b-origin"]["stored"]["revision"], "master")
        self.assertEqual(rows["qwen2.5-1.5b-origin"]["stored"]["revision"], "v1.1.0")
        if venv_python():
            ref = run_venv(MS_SCAN, self.ms)
            stored = rows["qwen2.5-0.5b-origin"]["stored"]
            self.assertEqual(ref["Qwen/Qwen2.5-0.5B-Instruct"],
                             [int(stored["size_on_disk"]), int(stored["num_files"]), "master"])
            path = run_venv(MS_OFFLINE_PATH, self.ms, "Qwen/Qwen2.5-0.5B-Instruct")
            self.assertEqual(path, stored["snapshot_path"])
        r = self.cli("chat", "remove", "qwen2.5-[01].5b-origin", "--hub", "ms", "-y")
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.ms, "models", "Qwen--Qwen2.5-0.5B-Instruct")))
        self.assertFalse(os.path.lexists(os.path.join(self.ms, "models", "Qwen", "Qwen2.5-1.5B-Instruct")))
        self.assertFalse(os.path.exists(classic))
        self.assertTrue(os.path.exists(oldest))
        if venv_python():
            self.assertNotIn("Qwen/Qwen2.5-0.5B-Instruct", run_venv(MS_SCAN, self.ms))


class RemoveTest(StoreTestCase):
    def test_pattern_matching_nothing_fails_with_a_message(self):
        write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        r = self.cli("chat", "remove", "qwq-*", "-y")
        self.assertNotEqual(r.returncode, EXIT_OK)
        self.assertIn("qwq-*", r.stderr)
        self.assertTrue(os.path.isdir(os.path.join(self.hf, "models--Qwen--Qwen2.5-0.5B-Instruct")))

    def test_without_y_and_no_terminal_refuses(self):
        repo = write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        r = self.cli("chat", "remove", "qwen2.5-0.5b-origin", input="y\n")
        self.assertEqual(r.returncode, EXIT_USAGE, r.stderr)
        self.assertIn("-y", r.stderr)
        self.assertIn("will be removed", r.stdout)
        self.assertTrue(os.path.isdir(repo))

    def remove_at_terminal(self, pattern, answer):
        """Runs `chat remove PATTERN` with a terminal as stdin and types `answer` at the prompt."""
        main, secondary = pty.openpty()
        try:
            proc = subprocess.Popen([binary("bmserver"), "--daemon", self.daemon.address, "chat", "remove", pattern],
                                    stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=self.daemon.env)
            os.write(main, answer.encode())
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(main)
            os.close(secondary)
        return proc.returncode, out, err

    def test_prompt_at_a_terminal(self):
        repo = write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        rc, out, err = self.remove_at_terminal("qwen2.5-0.5b-origin", "n\n")
        self.assertNotEqual(rc, EXIT_OK)
        self.assertIn("Do you want to remove the 1 chat model? [y/N]", err)
        self.assertTrue(os.path.isdir(repo))
        rc, out, err = self.remove_at_terminal("qwen2.5-0.5b-origin", "y\n")
        self.assertEqual(rc, EXIT_OK, err)
        self.assertIn("Removed qwen2.5-0.5b-origin", out)
        self.assertFalse(os.path.lexists(repo))

    def test_with_y_removes_only_that_model(self):
        repo = write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        other = write_hf_repo(self.hf, "Qwen/Qwen2.5-0.5B-Instruct-AWQ", sharded_model())
        rows, _ = self.rows("list")
        size = int(rows["qwen2.5-0.5b-origin"]["stored"]["size_on_disk"])
        r = self.cli("chat", "remove", "qwen2.5-0.5b-origin", "-y")
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertIn("Removed qwen2.5-0.5b-origin", r.stdout)
        self.assertFalse(os.path.lexists(repo))
        self.assertFalse(os.path.lexists(os.path.join(self.hf, ".locks", os.path.basename(repo))))
        self.assertTrue(os.path.isdir(other))
        self.assertTrue(os.path.isdir(os.path.join(self.hf, ".locks", os.path.basename(other))))
        self.assertEqual(sorted(os.listdir(self.hf)), [".locks", os.path.basename(other)])
        out = self.daemon.cli_json("chat", "remove", "qwen2.5-0.5b-awq", "-y")
        self.assertEqual(out["models"][0]["name"], "qwen2.5-0.5b-awq")
        self.assertEqual(int(out["total_bytes_freed"]), size)  # same files, same size
        if venv_python():
            scan = run_venv(HF_SCAN, self.hf)
            self.assertEqual(scan["warnings"], [])
            self.assertEqual(scan["repos"], [])

    def test_never_follows_a_link_out_of_the_store(self):
        outside = os.path.join(self.tmp, "outside")
        shutil.rmtree(outside, ignore_errors=True)
        write_hf_repo(outside, "Qwen/Qwen2.5-0.5B-Instruct", sharded_model())
        target = os.path.join(outside, "models--Qwen--Qwen2.5-0.5B-Instruct")
        os.symlink(target, os.path.join(self.hf, "models--Qwen--Qwen2.5-0.5B-Instruct"))
        r = self.cli("chat", "remove", "qwen2.5-0.5b-origin", "-y")
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertFalse(os.path.lexists(os.path.join(self.hf, "models--Qwen--Qwen2.5-0.5B-Instruct")))
        self.assertTrue(os.path.isfile(os.path.join(target, "snapshots", COMMIT, "config.json")))

    def test_concurrent_list_during_remove(self):
        names = []
        for entry in load_catalog()[:16]:
            write_hf_repo(self.hf, entry["hf_repo_id"], sharded_model(num_shards=8, shard_bytes=1024))
            names.append(entry["name"])
        errors = []
        done = threading.Event()

        def lister():
            while not done.is_set():
                r = self.cli("chat", "list", "-o", "json")
                if r.returncode != 0:
                    errors.append(r.stderr)
                    continue
                for row in json.loads(r.stdout)["rows"]:
                    if row["stored"]["state"] != "downloaded":
                        errors.append(f"{row['entry']['name']} seen {row['stored']['state']}: "
                                      f"{row['stored']['reason']}")

        threads = [threading.Thread(target=lister) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            r = self.cli("chat", "remove", "*", "-y")
        finally:
            done.set()
            for t in threads:
                t.join()
        self.assertEqual(r.returncode, EXIT_OK, r.stderr)
        self.assertEqual(errors, [])
        self.assertEqual(os.listdir(self.hf), [".locks"])
        rows, _ = self.rows("list")
        self.assertEqual(rows, {})


if __name__ == "__main__":
    unittest.main()
