"""Quantized checkpoints end to end: `bmserver chat serve` of tiny random-weight GPTQ-Int4, GPTQ-Int8 and AWQ
model folders (tests/tools/make_tiny_served_model.py --quantization, the real Qwen2.5 tokenizer) on the CPU
backend answers chat completions, and `chat ps` shows the quantization and the packed weight size. A folder with
a bad quantized tensor is refused with the tensor's name while the daemon keeps serving."""
import json
import os
import shutil
import struct
import tempfile
import unittest

from harness import Daemon
from serving_fixture import http, make_tiny_model

SCHEMES = ("gptq-int4", "gptq-int8", "awq-int4")


class QuantizedServingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bm-quant-")
        cls.daemon = Daemon().start()
        cls.base = f"http://127.0.0.1:{cls.daemon.http_port}"
        cls.names = {}
        for scheme in SCHEMES:
            path = make_tiny_model(cls.root, "qwen2.5", quantization=scheme)
            r = cls.daemon.cli("chat", "serve", path, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20),
                               timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"serve {path} failed ({r.returncode}): {r.stderr}\n{cls.daemon.read_log()}")
            cls.names[scheme] = os.path.basename(path)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_chat_completion_answers(self):
        for scheme, name in self.names.items():
            with self.subTest(scheme):
                status, body = http("POST", self.base + "/v1/chat/completions",
                                    {"model": name, "messages": [{"role": "user", "content": "Hello"}],
                                     "max_tokens": 8, "temperature": 0, "ignore_eos": True})
                self.assertEqual(status, 200, body)
                reply = json.loads(body)
                self.assertEqual(reply["usage"]["completion_tokens"], 8)
                self.assertIsInstance(reply["choices"][0]["message"]["content"], str)

    def test_ps_shows_the_quantization(self):
        models = {m["name"]: m for m in self.daemon.cli_json("chat", "ps")["models"]}
        table = self.daemon.cli("chat", "ps").stdout
        for scheme, name in self.names.items():
            with self.subTest(scheme):
                self.assertEqual(models[name]["state"], "ready")
                self.assertEqual(models[name]["quantization"], scheme)
                self.assertIn(scheme, table)
        # The packed int4 weights take less room than int8 (the float tensors are the same F16 in both).
        self.assertLess(int(models[self.names["gptq-int4"]]["weight_bytes"]),
                        int(models[self.names["gptq-int8"]]["weight_bytes"]))

    def test_a_bad_quantized_tensor_is_refused_by_name(self):
        path = make_tiny_model(self.root, "qwen2.5", name="tiny-bad-scales", quantization="gptq-int4")
        weights = os.path.join(path, "model.safetensors")
        with open(weights, "rb") as f:
            length = struct.unpack("<Q", f.read(8))[0]
            header = f.read(length)
            rest = f.read()
        # Relabel one layer's F16 scales as BF16 (same size): a dtype a GPTQ checkpoint never has.
        tensors = json.loads(header)
        tensors["model.layers.1.mlp.up_proj.scales"]["dtype"] = "BF16"
        text = json.dumps(tensors, separators=(",", ":")).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(weights, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + rest)
        r = self.daemon.cli("chat", "serve", path, "--backend", "cpu", "--kv-cache-bytes", str(16 << 20), timeout=300)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("model.layers.1.mlp.up_proj.scales", r.stderr)
        self.assertIn("must be F16", r.stderr)
        status, _ = http("GET", self.base + "/health")
        self.assertEqual(status, 200)
        names = [m["name"] for m in self.daemon.cli_json("chat", "ps")["models"]]
        self.assertNotIn("tiny-bad-scales", names)


if __name__ == "__main__":
    unittest.main()
