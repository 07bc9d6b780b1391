"""`bmserver chat benchmark` end to end: the real bmserverd and bmserver.

- EndpointBenchmarkTest drives tests/tools/fake_openai_server.py through `--endpoint`, so the whole harness
  (daemon, load generator, store, CLI, CSV, plot) is checked independently of our engine.
- BadInputTest: each bad input is one sentence and stores nothing.
- PostgresBenchmarkTest starts a real PostgreSQL 15 (Debian's; needs root for initdb via runuser) and checks
  that the sweep is upserted there and read back.
- ServedBenchmarkTest benchmarks a tiny random-weight model on the CPU backend with a forced small KV cache;
  it skips with the daemon's sentence while this build has no engine runtime.
- ImageBenchmarkTest runs the image workload against the tiny Qwen2.5-VL model (vision tower included) and checks
  that the rows carry the image settings and token counts; a text-only model and a bad size are one sentence.
"""
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import Daemon, SOURCE_DIR, free_port
from serving_fixture import make_tiny_model

FAKE_SERVER = os.path.join(SOURCE_DIR, "tests", "tools", "fake_openai_server.py")
PG_BIN = "/usr/lib/postgresql/15/bin"


def levels(maximum):
    """1, 2, 4, … below the maximum, then the maximum (the sweep the issue specifies)."""
    out, n = [], 1
    while n < maximum:
        out.append(n)
        n *= 2
    return out + ([maximum] if maximum > 0 else [])


class FakeServer:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, FAKE_SERVER, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.url = "http://127.0.0.1:" + line.split()[1]

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


def require_benchmarks_service(test, result):
    """The Benchmarks service is registered in daemon/daemon.cpp; until it is, say so instead of failing."""
    text = (result.stderr or "").lower()
    if result.returncode != 0 and ("unimplemented" in text or "method not found" in text):
        raise unittest.SkipTest("this bmserverd does not register the Benchmarks service yet (daemon/daemon.cpp)")


class BenchmarkCase(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon().start()
        self.fake = FakeServer()

    def tearDown(self):
        self.fake.close()
        rc = self.daemon.stop()
        log = self.daemon.read_log()
        self.daemon.close()
        self.assertIn(rc, (0, None), f"bmserverd did not exit cleanly ({rc}):\n{log}")

    def bench(self, *args, env=None):
        r = self.daemon.cli("chat", "benchmark", *args, env=env, timeout=300)
        require_benchmarks_service(self, r)
        return r

    def stored(self, env=None):
        r = self.daemon.cli("chat", "benchmark", "export", "-o", "json", env=env)
        require_benchmarks_service(self, r)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout).get("results", [])


class EndpointBenchmarkTest(BenchmarkCase):
    def test_sweep_is_exact_stored_and_exported(self):
        out_dir = tempfile.mkdtemp(prefix="bm-bench-out-")
        try:
            csv_path, svg_path = os.path.join(out_dir, "r.csv"), os.path.join(out_dir, "r.svg")
            r = self.bench("--endpoint", self.fake.url, "--max-concurrency", "9", "--prompt-tokens", "24,40",
                           "--completion-tokens", "6", "--csv", csv_path, "--plot", svg_path, "-o", "json")
            self.assertEqual(r.returncode, 0, r.stderr)
            results = json.loads(r.stdout)["results"]
            for p in (24, 40):
                runs = [x for x in results if x["num_prompt_tokens"] == p]
                self.assertEqual([x["num_requests"] for x in runs], [1, 2, 4, 8, 9])
                for x in runs:
                    self.assertEqual(x["num_errors"], 0, x["first_error"])
                    self.assertEqual(x["num_completed"], x["num_requests"])
                    self.assertEqual(x["num_completion_tokens"], 6)
                    self.assertEqual(x["max_requests"], 9)
                    # Every request had exactly P prompt and C completion tokens (usage-checked by the runner).
                    self.assertAlmostEqual(x["total_token_throughput"] / x["completion_token_throughput"], (p + 6) / 6)
                    self.assertGreater(x["ttft_ms"]["p50"], 0)
                    self.assertLessEqual(x["ttft_ms"]["p50"], x["ttft_ms"]["p99"])
            with open(csv_path) as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(len(rows), 10)
            self.assertEqual(rows[4]["num_requests"], "9")
            with open(svg_path) as f:
                svg = f.read()
            self.assertIn("<svg", svg)
            self.assertIn("24 → 6 tokens", svg)

            stored = self.stored()
            self.assertEqual(len(stored), 10)
            # The same sweep again upserts: still ten rows, newer numbers.
            r = self.bench("--endpoint", self.fake.url, "--max-concurrency", "9", "--prompt-tokens", "24,40",
                           "--completion-tokens", "6")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("Stored 10 runs in SQLite", r.stdout)
            self.assertEqual(len(self.stored()), 10)
            listed = self.daemon.cli("chat", "benchmark", "list")
            self.assertEqual(listed.returncode, 0, listed.stderr)
            self.assertIn("fake-model", listed.stdout)
            export = self.daemon.cli("chat", "benchmark", "export", "fake-model")
            self.assertEqual(len(list(csv.DictReader(io.StringIO(export.stdout)))), 10)
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def test_probe_without_a_maximum_stops_where_errors_start(self):
        self.fake.close()
        self.fake = FakeServer("--fail-above", "3", "--token-delay-ms", "20")
        r = self.bench("--endpoint", self.fake.url, "--prompt-tokens", "16", "--completion-tokens", "4", "-o", "json")
        self.assertEqual(r.returncode, 0, r.stderr)
        results = json.loads(r.stdout)["results"]
        self.assertEqual([x["num_requests"] for x in results][-1], 4)
        self.assertGreater(results[-1]["num_errors"], 0)
        self.assertTrue(all(x["max_requests"] == 2 for x in results), results)


class BadInputTest(BenchmarkCase):
    def assert_one_sentence(self, args, fragment, env=None):
        r = self.bench(*args, env=env)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(fragment, lines[0])

    def test_each_bad_input_is_one_sentence_and_stores_nothing(self):
        ep = ["--endpoint", self.fake.url]
        self.assert_one_sentence(ep + ["--prompt-tokens=-5"], "prompt tokens must be at least 1, not -5")
        self.assert_one_sentence(ep + ["--completion-tokens", "0"], "completion tokens must be at least 1, not 0")
        self.assert_one_sentence(ep + ["--prompt-tokens", "4000", "--completion-tokens", "200"],
                                 "is over the model's context of 4096 tokens")
        self.assert_one_sentence(["qwen2.5-7b-awq", "--prompt-tokens", "16"], "not downloaded")
        # The catalog knows qwen2.5-7b-awq is text-only: refused before it is looked for or served.
        self.assert_one_sentence(["qwen2.5-7b-awq", "--images-per-prompt", "1"],
                                 "--images-per-prompt needs a model that takes images, and qwen2.5-7b-awq is text-only")
        self.assert_one_sentence(ep + ["--images-per-prompt=-1"], "--images-per-prompt must not be negative, not -1")
        self.assert_one_sentence(ep, "cannot use the results database PostgreSQL 127.0.0.1:",
                                 env={"BMSERVER_POSTGRES_URL": f"postgresql+psycopg://u:pw@127.0.0.1:{free_port()}/x"})
        html = FakeServer("--mode", "html")
        try:
            self.assert_one_sentence(["--endpoint", html.url, "--prompt-tokens", "16", "--completion-tokens", "4"],
                                     "is not an OpenAI-compatible server")
        finally:
            html.close()
        self.assertEqual(self.stored(), [])


class PostgresServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bm-pg-e2e-")
        self.port = free_port()
        shutil.chown(self.dir, "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/initdb", "-D", f"{self.dir}/data", "-U", "postgres",
                        "-A", "trust", "--no-sync"], check=True, capture_output=True)
        self.ctl("start")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", f"{self.dir}/data", "-w", "-l",
                        f"{self.dir}/log", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                        action] + (["-m", "immediate"] if action == "stop" else []), check=True, capture_output=True)

    def psql(self, sql):
        return subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port),
                               "-U", "postgres", "-At", "-c", sql], check=True, capture_output=True, text=True).stdout.strip()

    def close(self):
        try:
            self.ctl("stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@unittest.skipUnless(os.path.exists(f"{PG_BIN}/initdb") and os.geteuid() == 0,
                     "needs Debian's postgresql 15 and root (initdb runs as the postgres user via runuser)")
class PostgresBenchmarkTest(BenchmarkCase):
    def test_sweep_goes_to_postgres_and_is_upserted(self):
        pg = PostgresServer()
        try:
            env = {"BMSERVER_POSTGRES_URL": pg.url.replace("postgresql://", "postgresql+psycopg://")}
            for _ in range(2):
                r = self.bench("--endpoint", self.fake.url, "--max-concurrency", "3", "--prompt-tokens", "20",
                               "--completion-tokens", "5", env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"Stored 3 runs in PostgreSQL 127.0.0.1:{pg.port}/postgres", r.stdout)
            self.assertEqual(pg.psql("SELECT count(*) FROM chat_benchmark_result"), "3")
            self.assertEqual(pg.psql("SELECT max(version) FROM schema_version"), "3")  # 3: the tensor-parallel size
            self.assertEqual(pg.psql("SELECT string_agg(num_requests::text, ',' ORDER BY num_requests) "
                                     "FROM chat_benchmark_result WHERE num_prompt_tokens = 20"), "1,2,3")
            self.assertEqual(len(self.stored(env=env)), 3)
            self.assertEqual(self.stored(), [])  # the SQLite default got nothing
        finally:
            pg.close()


class ServedBenchmarkTest(unittest.TestCase):
    """The whole flow on our engine: serve a tiny model on the CPU with a small KV cache, sweep, check."""

    def test_forced_small_kv_cache_gives_exactly_the_expected_sweep(self):
        root = tempfile.mkdtemp(prefix="bm-bench-model-")
        daemon = Daemon().start()
        try:
            model = make_tiny_model(root)
            p, c = 48, 16
            r = daemon.cli("chat", "benchmark", model, "--backend", "cpu", "--kv-cache-bytes", str(1 << 20),
                           "--prompt-tokens", str(p), "--completion-tokens", str(c), "-o", "json", timeout=900)
            require_benchmarks_service(self, r)
            if r.returncode != 0 and "no engine runtime yet" in r.stderr:
                raise unittest.SkipTest("this build has no engine runtime yet: " + r.stderr.strip())
            self.assertEqual(r.returncode, 0, r.stderr + daemon.read_log()[-3000:])
            results = json.loads(r.stdout)["results"]
            self.assertTrue(results)
            # 64-bit integers are JSON strings in the proto3 JSON mapping.
            kv, seqs = int(results[0]["max_cache_tokens"]), int(results[0]["max_num_seqs"])
            self.assertGreater(kv, 0)
            expected_max = min(kv // (p + c), seqs, 256)
            self.assertEqual([x["num_requests"] for x in results], levels(expected_max))
            for x in results:
                self.assertEqual(x["num_errors"], 0, x["first_error"])  # the runner checks usage == P and C
                self.assertEqual((x["num_prompt_tokens"], x["num_completion_tokens"]), (p, c))
                self.assertEqual(x["nvidia_device_name"], "cpu")
                self.assertGreaterEqual(x["peak_kv_usage"], 0)
            # The benchmark served the model itself, so it unloads it again.
            self.assertEqual(daemon.cli_json("chat", "ps").get("models", []), [])
            for x in results:
                self.assertEqual(x["tensor_parallel_size"], 1)
                self.assertEqual(x.get("nvidia_device_count", 0), 0)  # no GPU
            # Two CPU ranks with half the KV bytes each hold the same tokens (each rank holds half the KV heads of
            # every token: the capacity is the ranks' together), so the same maximum concurrency; the rows carry
            # the size and, it being in the key, sit beside the one-rank rows instead of replacing them.
            r = daemon.cli("chat", "benchmark", model, "--backend", "cpu", "--kv-cache-bytes", str(1 << 19),
                           "--tensor-parallel-size", "2", "--prompt-tokens", str(p), "--completion-tokens", str(c),
                           "-o", "json", timeout=900)
            self.assertEqual(r.returncode, 0, r.stderr + daemon.read_log()[-3000:])
            two = json.loads(r.stdout)["results"]
            self.assertEqual(int(two[0]["max_cache_tokens"]), kv)
            self.assertEqual([x["num_requests"] for x in two], levels(expected_max))
            for x in two:
                self.assertEqual(x["num_errors"], 0, x["first_error"])
                self.assertEqual(x["tensor_parallel_size"], 2)
                self.assertEqual(json.loads(x["serve_options"])["tensor_parallel_size"], 2)
            stored = daemon.cli_json("chat", "benchmark", "export", os.path.basename(model))["results"]
            self.assertEqual(sorted(x["tensor_parallel_size"] for x in stored),
                             sorted([1] * len(results) + [2] * len(two)))
            listed = daemon.cli("chat", "benchmark", "list")
            self.assertIn("cpu (2 ranks)", listed.stdout)
            # A pair that fits no request at all is reported and skipped.
            big = kv  # P + C > KV capacity
            r = daemon.cli("chat", "benchmark", model, "--backend", "cpu", "--kv-cache-bytes", str(1 << 20),
                           "--prompt-tokens", str(big), "--completion-tokens", "1", timeout=900)
            self.assertTrue("not one request fits" in r.stdout or "over the model's context" in r.stderr, r.stdout + r.stderr)
        finally:
            daemon.close()
            shutil.rmtree(root, ignore_errors=True)


class ImageBenchmarkTest(unittest.TestCase):
    """--images-per-prompt on the tiny Qwen2.5-VL model: the smallest sweep (--max-num-seqs 2: levels 1 and 2)."""

    def test_image_workload_is_measured_and_stored_with_its_settings(self):
        root = tempfile.mkdtemp(prefix="bm-bench-vl-")
        daemon = Daemon().start()
        try:
            vl = make_tiny_model(root, "qwen2.5-vl", name="tiny-vl-bench", tool_args=["--processor-template"])
            text = make_tiny_model(root, "qwen2.5", name="tiny-text-bench")
            serve = ["--backend", "cpu", "--kv-cache-bytes", str(8 << 20), "--max-num-seqs", "2"]
            p, c = 64, 4
            r = daemon.cli("chat", "benchmark", vl, *serve, "--prompt-tokens", str(p), "--completion-tokens", str(c),
                           "--images-per-prompt", "1", "--image-size", "112x112", "-o", "json", timeout=600)
            require_benchmarks_service(self, r)
            if r.returncode != 0 and "no engine runtime yet" in r.stderr:
                raise unittest.SkipTest("this build has no engine runtime yet: " + r.stderr.strip())
            self.assertEqual(r.returncode, 0, r.stderr + daemon.read_log()[-3000:])
            results = json.loads(r.stdout)["results"]
            self.assertEqual([x["num_requests"] for x in results], [1, 2])
            for x in results:
                self.assertEqual(x["num_errors"], 0, x.get("first_error"))  # usage said exactly P and C
                self.assertEqual((x["num_prompt_tokens"], x["num_completion_tokens"]), (p, c))
                # 112x112 is 8x8 patches merged 2x2: 16 pads, plus <|vision_start|> and <|vision_end|>.
                self.assertEqual((x["images_per_prompt"], x["image_width"], x["image_height"], x["num_image_tokens"]),
                                 (1, 112, 112, 18))
                self.assertGreater(x["ttft_ms"]["p50"], 0)

            # Stored under the image key: the same P, C and concurrency as text would be another row.
            r = daemon.cli("chat", "benchmark", "export", "-o", "json")
            self.assertEqual(r.returncode, 0, r.stderr)
            stored = json.loads(r.stdout)["results"]
            self.assertEqual(sorted((x["num_requests"], x["images_per_prompt"], x["num_image_tokens"]) for x in stored),
                             [(1, 1, 18), (2, 1, 18)])
            r = daemon.cli("chat", "benchmark", "export")
            rows = list(csv.DictReader(io.StringIO(r.stdout)))
            self.assertEqual({(row["images_per_prompt"], row["image_width"], row["image_height"]) for row in rows},
                             {("1", "112", "112")})
            r = daemon.cli("chat", "benchmark", "list")
            self.assertIn("1×112x112", r.stdout)
            r = daemon.cli("chat", "benchmark", "show", "tiny-vl-bench")
            self.assertIn("IMG TOK", r.stdout)

            # Bad input: one sentence each, nothing more stored.
            for args, fragment in [
                ([text, *serve, "--prompt-tokens", "64", "--completion-tokens", "4", "--images-per-prompt", "1"],
                 "--images-per-prompt needs a model that takes images, and "),
                ([vl, *serve, "--images-per-prompt", "1", "--image-size", "112"], "--image-size takes WIDTHxHEIGHT"),
                ([vl, *serve, "--images-per-prompt", "1", "--image-size", "20x112"], "is outside 28..4096 pixels"),
                ([vl, *serve, "--image-size", "112x112"], "give --images-per-prompt N too"),
                ([vl, *serve, "--prompt-tokens", "20", "--completion-tokens", "4", "--images-per-prompt", "1",
                  "--image-size", "112x112"], "and 1 image of 112x112 (18 tokens) together"),
            ]:
                r = daemon.cli("chat", "benchmark", *args, timeout=600)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                lines = [l for l in r.stderr.splitlines() if l.strip()]
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(fragment, lines[0])
            r = daemon.cli("chat", "benchmark", "export", "-o", "json")
            self.assertEqual(len(json.loads(r.stdout)["results"]), 2)
            self.assertEqual(daemon.cli_json("chat", "ps").get("models", []), [])
        finally:
            daemon.close()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
