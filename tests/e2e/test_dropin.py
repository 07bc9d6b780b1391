"""The original bmserver's command lines, names and HTTP surface keep working (issue 17): the hub as a leading
positional, the benchmark's flag names and --upload, --extra-params, `chat update` without -y, "DEFAULT" as a
model name, GET /version, vLLM's /v1/models card and vLLM's metric names and labels."""
import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import unittest

from harness import Daemon, free_port
from serving_fixture import ServedDaemon, http, make_tiny_model
from test_download import TOKEN, FakeHub, tiny_files

# vLLM's documented Prometheus metrics, as listed on https://docs.vllm.ai/en/v0.9.1/usage/metrics.html (the
# "Production Metrics" page of the 0.8/0.9 releases the original pinned; vllm 0.8.4) and in vLLM's
# docs/design/metrics.md for the V1 names (kv_cache_usage_perc, prefix_cache_*, inter_token_latency_seconds).
# Name (as scraped, with prometheus_client's _total on counters) -> (type, label names besides `le`).
VLLM_DOCUMENTED = {
    "vllm:num_requests_running": ("gauge", {"model_name"}),
    "vllm:num_requests_waiting": ("gauge", {"model_name"}),
    "vllm:num_requests_swapped": ("gauge", {"model_name"}),
    "vllm:gpu_cache_usage_perc": ("gauge", {"model_name"}),
    "vllm:cpu_cache_usage_perc": ("gauge", {"model_name"}),
    "vllm:kv_cache_usage_perc": ("gauge", {"model_name"}),
    "vllm:cpu_prefix_cache_hit_rate": ("gauge", {"model_name"}),
    "vllm:gpu_prefix_cache_hit_rate": ("gauge", {"model_name"}),
    "vllm:gpu_prefix_cache_queries_total": ("counter", {"model_name"}),
    "vllm:gpu_prefix_cache_hits_total": ("counter", {"model_name"}),
    "vllm:prefix_cache_queries_total": ("counter", {"model_name"}),
    "vllm:prefix_cache_hits_total": ("counter", {"model_name"}),
    "vllm:num_preemptions_total": ("counter", {"model_name"}),
    "vllm:prompt_tokens_total": ("counter", {"model_name"}),
    "vllm:generation_tokens_total": ("counter", {"model_name"}),
    "vllm:request_success_total": ("counter", {"model_name", "finished_reason"}),
    "vllm:iteration_tokens_total": ("histogram", {"model_name"}),
    "vllm:time_to_first_token_seconds": ("histogram", {"model_name"}),
    "vllm:time_per_output_token_seconds": ("histogram", {"model_name"}),
    "vllm:inter_token_latency_seconds": ("histogram", {"model_name"}),
    "vllm:e2e_request_latency_seconds": ("histogram", {"model_name"}),
    "vllm:request_queue_time_seconds": ("histogram", {"model_name"}),
    "vllm:request_inference_time_seconds": ("histogram", {"model_name"}),
    "vllm:request_prefill_time_seconds": ("histogram", {"model_name"}),
    "vllm:request_decode_time_seconds": ("histogram", {"model_name"}),
    "vllm:request_prompt_tokens": ("histogram", {"model_name"}),
    "vllm:request_generation_tokens": ("histogram", {"model_name"}),
    "vllm:request_max_num_generation_tokens": ("histogram", {"model_name"}),
    "vllm:request_params_n": ("histogram", {"model_name"}),
    "vllm:request_params_max_tokens": ("histogram", {"model_name"}),
}
# The ones the dashboards people run for vLLM plot (vLLM's examples/online_serving/prometheus_grafana
# dashboard, and the issue's list): these must be there.
VLLM_REQUIRED = [
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
    "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds", "vllm:time_per_output_token_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_prompt_tokens", "vllm:request_generation_tokens", "vllm:request_success_total",
    "vllm:num_preemptions_total", "vllm:gpu_prefix_cache_queries_total", "vllm:gpu_prefix_cache_hits_total",
    "vllm:gpu_prefix_cache_hit_rate", "vllm:request_params_n", "vllm:request_params_max_tokens",
    "vllm:request_max_num_generation_tokens",
]
# vLLM's ModelCard (vllm/entrypoints/openai/protocol.py) and ModelPermission fields.
VLLM_MODEL_CARD = {"id", "object", "created", "owned_by", "root", "parent", "max_model_len", "permission"}
VLLM_MODEL_PERMISSION = {"id", "object", "created", "allow_create_engine", "allow_sampling", "allow_logprobs",
                         "allow_search_indices", "allow_view", "allow_fine_tuning", "organization", "group",
                         "is_blocking"}

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def scrape(text):
    """{family: (type, set of label-name sets)} from Prometheus text."""
    types, labels = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            labels.setdefault(name, set())
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        name, raw = m.group(1), m.group(2) or ""
        family = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in types else name
        keys = frozenset(k for k in re.findall(r'(\w+)="', raw) if k != "le")
        labels.setdefault(family, set()).add(keys)
    return {n: (types.get(n), labels.get(n, set())) for n in types}


class DropInTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.served = ServedDaemon(serve_args=("--extra-params", "--max-model-len 1024 --no-enable-prefix-caching"))
        cls.daemon = cls.served.daemon
        cls.base = cls.served.base
        cls.model = cls.served.name()

    @classmethod
    def tearDownClass(cls):
        cls.served.close()

    def chat(self, model, max_tokens=2):
        return http("POST", self.base + "/v1/chat/completions",
                    {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
                     "ignore_eos": True})

    # --- the hub as the original's first positional argument -------------------------------------------
    def test_leading_hub_is_the_hub_not_a_pattern(self):
        everything = self.daemon.cli_json("chat", "search")
        for hub in ("hf", "ms"):
            got = self.daemon.cli_json("chat", "search", hub)
            self.assertEqual(len(got["rows"]), len(everything["rows"]), hub)
            self.assertEqual(got, self.daemon.cli_json("chat", "search", "--hub", hub))
        some = self.daemon.cli_json("chat", "search", "ms", "qwen2.5-7b*")
        self.assertEqual(sorted(m["entry"]["name"] for m in some["rows"]),
                         ["qwen2.5-7b-awq", "qwen2.5-7b-gptq4", "qwen2.5-7b-gptq8", "qwen2.5-7b-origin"])
        self.assertEqual(some, self.daemon.cli_json("chat", "search", "qwen2.5-7b*", "--hub", "ms"))
        r = self.daemon.cli("chat", "list", "hf")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.daemon.cli("chat", "list", "--hub", "hf").stdout)

    def test_hub_given_twice_or_without_a_name_is_one_sentence(self):
        r = self.daemon.cli("chat", "list", "ms", "--hub", "hf")
        self.assertEqual((r.returncode, r.stderr),
                         (2, "bmserver: the hub is given twice, as 'ms' and as --hub hf; give it once\n"))
        r = self.daemon.cli("chat", "serve", "hf")
        self.assertEqual((r.returncode, r.stderr),
                         (2, "bmserver: after the hub, name a model: bmserver chat serve [hf|ms] NAME\n"))
        r = self.daemon.cli("chat", "download", "ms", "no-such-model")
        self.assertEqual(r.returncode, 2)  # the hub was taken; the name is what is wrong
        self.assertIn("no-such-model", r.stderr)

    # --- benchmark flags -------------------------------------------------------------------------------
    def test_upload_without_database_url_fails_before_starting(self):
        env = {"BMSERVER_POSTGRES_URL": ""}
        r = self.daemon.cli("chat", "benchmark", "hf", self.model, "--num-prompt-tokens", "8",
                            "--num-prompt-tokens", "16", "--num-completion-tokens", "4", "--upload", env=env)
        self.assertEqual((r.returncode, r.stderr), (2, "bmserver: Environment variable BMSERVER_POSTGRES_URL is not set.\n"))
        self.assertEqual(self.daemon.cli_json("chat", "benchmark", "list").get("results", []), [])

    # --- serve flags -----------------------------------------------------------------------------------
    def test_extra_params_reach_the_engine(self):
        ps = {m["name"]: m for m in self.daemon.cli_json("chat", "ps")["models"]}[self.model]
        self.assertEqual(ps["max_model_len"], 1024)
        self.assertTrue(ps["options"]["disable_prefix_caching"])
        self.assertEqual(ps["options"]["extra_params"], "--max-model-len 1024 --no-enable-prefix-caching")

    def test_extra_params_refuse_what_has_no_meaning_and_change_nothing(self):
        before = self.daemon.cli_json("chat", "ps")
        r = self.daemon.cli("chat", "serve", self.served.models["qwen2.5"], "--backend", "cpu", "--extra-params",
                            "--trust-remote-code --tensor-parallel-size 0 --max-num-seqs=x")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        for part in ("--trust-remote-code has no meaning here",
                     "--tensor-parallel-size needs a whole number from 1 to 64",
                     "--max-num-seqs needs a whole number"):
            self.assertIn(part, r.stderr)
        r = self.daemon.cli("chat", "serve", "x", "--extra-params", "--max-model-len 'unclosed")
        self.assertEqual((r.returncode, r.stderr), (2, "bmserver: --extra-params has an unclosed ' quote\n"))
        self.assertEqual(before["models"][0]["options"], self.daemon.cli_json("chat", "ps")["models"][0]["options"])

    # --- confirmation ----------------------------------------------------------------------------------
    def test_update_without_yes_and_without_terminal_refuses(self):
        r = self.daemon.cli("chat", "update", "hf", input="")
        self.assertEqual((r.returncode, r.stderr),
                         (2, "bmserver: not updating: stdin is not a terminal, so nobody can confirm; pass -y\n"))

    # --- HTTP ------------------------------------------------------------------------------------------
    def test_default_answers_for_the_only_served_model(self):
        status, body = self.chat("DEFAULT")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["model"], "DEFAULT")
        status, body = http("POST", self.base + "/tokenize", {"model": "DEFAULT", "prompt": "hello"})
        self.assertEqual(status, 200, body)
        ids = [m["id"] for m in json.loads(http("GET", self.base + "/v1/models")[1])["data"]]
        self.assertIn("DEFAULT", ids)
        self.assertEqual(http("GET", self.base + "/v1/models/DEFAULT")[0], 200)

    def test_default_with_several_served_is_a_400_naming_them(self):
        second = make_tiny_model(self.served.root, "qwen2.5", name="second-model")
        r = self.daemon.cli("chat", "serve", second, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20), timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            status, body = self.chat("DEFAULT")
            self.assertEqual(status, 400, body)
            err = json.loads(body)["error"]
            self.assertEqual(err["param"], "model")
            self.assertIn(self.model, err["message"])
            self.assertIn("second-model", err["message"])
            ids = [m["id"] for m in json.loads(http("GET", self.base + "/v1/models")[1])["data"]]
            self.assertNotIn("DEFAULT", ids)
        finally:
            self.daemon.cli("chat", "stop", "second-model")

    def test_check_prints_the_plan_loads_nothing_and_its_command_serves_the_same(self):
        second = make_tiny_model(self.served.root, "qwen2.5", name="check-model")
        r = self.daemon.cli("chat", "serve", second, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20),
                            "--check", "--extra-params", "--max-num-seqs 8 --no-enable-prefix-caching")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = {l.split()[0]: l for l in r.stdout.splitlines()[1:] if l.strip()}
        self.assertTrue(r.stdout.startswith("Plan for check-model (check-model); nothing was loaded:\n"), r.stdout)
        self.assertIn("model.safetensors", lines["files"])
        self.assertIn("config.json", lines["files"])
        self.assertEqual(lines["backend"].split(), ["backend", "cpu"])
        self.assertRegex(lines["KV"], r"budget 16\.8M from --kv-cache-bytes = \d+ tokens")
        self.assertIn("up to 8 sequences at once, prefix caching off", lines["context"])
        self.assertNotIn("check-model", [m["name"] for m in self.daemon.cli_json("chat", "ps")["models"]])
        # The printed command asks for the same settings.
        command = shlex.split(lines["command"].split(None, 1)[1])
        self.assertEqual(command[:3], ["bmserver", "chat", "serve"])
        r = self.daemon.cli(*command[1:], timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            ps = {m["name"]: m for m in self.daemon.cli_json("chat", "ps")["models"]}["check-model"]
            self.assertEqual(ps["max_num_seqs"], 8)
            self.assertTrue(ps["options"]["disable_prefix_caching"])
            self.assertEqual(int(ps["options"]["kv_cache_bytes"]), 16 << 20)
        finally:
            self.daemon.cli("chat", "stop", "check-model")

    def test_port_opens_a_listener_for_that_model(self):
        port = free_port()
        second = make_tiny_model(self.served.root, "qwen2.5", name="port-model")
        r = self.daemon.cli("chat", "serve", second, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20),
                            "--port", str(port), timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            self.assertIn(f"on http://127.0.0.1:{port}", r.stdout)
            own = f"http://127.0.0.1:{port}"
            ids = [m["id"] for m in json.loads(http("GET", own + "/v1/models")[1])["data"]]
            self.assertEqual(sorted(ids), ["DEFAULT", "port-model"])  # only this model there, also as DEFAULT
            status, body = http("POST", own + "/v1/chat/completions",
                                {"model": "DEFAULT", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            self.assertEqual(status, 200, body)
            self.assertEqual(self.chat("port-model")[0], 200)  # the daemon's listener serves it too
            ps = {m["name"]: m for m in self.daemon.cli_json("chat", "ps")["models"]}
            self.assertEqual(ps["port-model"]["options"]["listen_port"], port)
        finally:
            self.daemon.cli("chat", "stop", "port-model")
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

    def test_port_in_use_fails_the_serve_and_serves_nothing(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        second = make_tiny_model(self.served.root, "qwen2.5", name="busy-port-model")
        r = self.daemon.cli("chat", "serve", second, "--backend", "cpu", "--port", str(port), timeout=300)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"cannot serve 'busy-port-model' on 127.0.0.1:{port} (--host/--port)", r.stderr)
        names = [m["name"] for m in self.daemon.cli_json("chat", "ps")["models"]]
        self.assertNotIn("busy-port-model", names)

    def test_version_as_vllm(self):
        status, body = http("GET", self.base + "/version")
        self.assertEqual(status, 200, body)
        version = json.loads(body)["version"]
        self.assertIn(version, self.daemon.cli("--version").stdout)

    def test_models_carry_vllm_model_card_fields(self):
        cards = json.loads(http("GET", self.base + "/v1/models")[1])["data"]
        for card in cards:
            self.assertEqual(set(card), VLLM_MODEL_CARD)
            self.assertEqual(set(card["permission"][0]), VLLM_MODEL_PERMISSION)
            self.assertGreater(card["created"], 1_600_000_000)

    def test_metrics_use_vllm_names_and_labels(self):
        self.assertEqual(self.chat(self.model)[0], 200)
        status, text = http("GET", self.base + "/metrics")
        self.assertEqual(status, 200)
        families = scrape(text)
        ours = {n: v for n, v in families.items() if n.startswith("vllm:")}
        for name, (kind, label_sets) in ours.items():
            self.assertIn(name, VLLM_DOCUMENTED, f"{name} is not one of vLLM's documented metrics")
            want_kind, want_labels = VLLM_DOCUMENTED[name]
            self.assertEqual(kind, want_kind, name)
            for labels in label_sets:
                self.assertEqual(set(labels), want_labels, name)
        for name in VLLM_REQUIRED:
            self.assertIn(name, ours)
            self.assertTrue(ours[name][1], f"{name} has no sample for the served model")
        others = [n for n in families if not n.startswith("vllm:")]
        self.assertTrue(all(n.startswith("bmserver:") for n in others), others)
        gen = [l for l in text.splitlines() if l.startswith("vllm:generation_tokens_total{")]
        self.assertTrue(any(f'model_name="{self.model}"' in l and float(l.split()[-1]) >= 2 for l in gen), gen)

    # --- env -o json carries the original's fields -----------------------------------------------------
    def test_env_json_has_the_originals_fields(self):
        env = self.daemon.cli_json("env")
        self.assertEqual(env["bmserver_version"], env["daemon_version"])
        self.assertEqual(env["nvidia_device_count"], len(env["gpus"]))
        self.assertEqual(env["nvidia_device_name"], env["gpus"][0]["name"] if env["gpus"] else "")
        self.assertEqual(env["nvidia_driver_version"], env["driver_version"])
        for absent in ("torch_version", "transformers_version", "vllm_version"):
            self.assertIsNone(env[absent])

    def test_command_cuda_visible_devices_picks_the_gpu(self):
        # The daemon sees no GPU here (or fewer than 8): the command's choice arrives and is refused by the daemon.
        folder = make_tiny_model(self.served.root, "qwen2.5", name="cvd-model")
        r = self.daemon.cli("chat", "serve", folder, "--backend", "cuda", env={"CUDA_VISIBLE_DEVICES": "7"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--gpus 7 is not a GPU this daemon sees", r.stderr)


class CommandEnvironmentTest(unittest.TestCase):
    """HF_ENDPOINT, HF_TOKEN and HF_HUB_CACHE set on a bmserver command take effect for that command."""

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="bm-e2e-env-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.workdir])
        self.hub = FakeHub(self.workdir)
        self.addCleanup(self.hub.close)
        self.hub.push(tiny_files())
        self.daemon_cache = os.path.join(self.workdir, "daemon-cache")
        os.makedirs(os.path.join(self.workdir, "d"))
        # The daemon's own endpoint goes nowhere and its token is wrong: only the command's can work.
        self.daemon = Daemon(workdir=os.path.join(self.workdir, "d"),
                             env={"HF_ENDPOINT": "http://127.0.0.1:1", "HF_TOKEN": "wrong",
                                  "HF_HUB_CACHE": self.daemon_cache, "BMSERVER_HUB": "hf"}).start()
        self.addCleanup(self.daemon.close)

    def test_download_and_list_use_the_commands_hub_and_cache(self):
        command_cache = os.path.join(self.workdir, "command-cache")
        env = {"HF_ENDPOINT": self.hub.url, "HF_TOKEN": TOKEN, "HF_HUB_CACHE": command_cache}
        r = self.daemon.cli("chat", "download", "hf", "qwen2.5-0.5b-origin", env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.isdir(os.path.join(command_cache, "models--Qwen--Qwen2.5-0.5B-Instruct")))
        self.assertFalse(os.path.exists(os.path.join(self.daemon_cache, "models--Qwen--Qwen2.5-0.5B-Instruct")))
        listed = self.daemon.cli_json("chat", "list", "hf", env=env)
        self.assertEqual([row["entry"]["name"] for row in listed["rows"]], ["qwen2.5-0.5b-origin"])
        self.assertEqual(self.daemon.cli_json("chat", "list", "hf", env={"HF_HUB_CACHE": ""})["rows"], [])
        # Without the command's endpoint the daemon's (unreachable) one is used.
        r = self.daemon.cli("chat", "download", "qwen2.5-1.5b-origin", env={"HF_ENDPOINT": "", "HF_TOKEN": ""})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("127.0.0.1:1", r.stderr)


if __name__ == "__main__":
    unittest.main()
