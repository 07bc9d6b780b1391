"""Images and videos through the OpenAI API (issue 19): a tiny random-weight Qwen2.5-VL (language model and vision
tower, make_tiny_served_model.py --flavour qwen2.5-vl --processor-template) served on the CPU backend with vLLM's
media flags, driven with the `openai` SDK and raw HTTP; media come as data: URLs, files under
--allowed-local-media-path and URLs of a local HTTP server listed in --allowed-media-domains.

Tests marked [engine] generate from an image or video, so they need the engine to encode media
(Engine::media_support() OK); the others exercise only the daemon's side (parsing, policy, preprocessing, pad
expansion through /tokenize, refusals) and pass without it."""
import base64
import http.server as http_server
import json
import os
import struct
import tempfile
import threading
import time
import unittest
import zlib

from serving_fixture import ServedDaemon, http, make_tiny_model
from harness import Daemon, SOURCE_DIR

try:
    import openai
except ImportError:
    openai = None

IMAGE_PAD, VIDEO_PAD = 151655, 151656
BAD = os.path.join(SOURCE_DIR, "tests", "data", "vision", "bad")


def png(width, height, seed=0):
    """An RGB PNG of a gradient (zlib only, so no imaging library is needed)."""
    rows = b"".join(b"\x00" + b"".join(bytes(((x * 7 + y * 3 + seed) % 256, (y * 5) % 256, (x + seed) % 256))
                                       for x in range(width)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def avi(width=64, height=48, frames=8, fps=4):
    """An uncompressed AVI (BI_RGB) that FFmpeg reads (the layout of tests/unit/engine/vision/video_decoder_test.cpp)."""
    def chunk(kind, body):
        return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")

    def lst(kind, body):
        return chunk(b"LIST", kind + body)
    frame_bytes = width * height * 3
    avih = struct.pack("<14I", 1000000 // fps, frame_bytes * fps, 0, 0, frames, 0, 1, frame_bytes, width, height,
                       0, 0, 0, 0)
    strh = b"vidsDIB " + struct.pack("<IHH8I4H", 0, 0, 0, 0, 1, fps, 0, frames, frame_bytes, 0xFFFFFFFF, 0,
                                     0, 0, width, height)
    strf = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, frame_bytes, 0, 0, 0, 0)
    movi = b"".join(chunk(b"00dc", bytes([(f * 30 + i) % 256 for i in range(256)]) * (frame_bytes // 256)
                          + bytes(frame_bytes % 256)) for f in range(frames))
    hdrl = lst(b"hdrl", chunk(b"avih", avih) + lst(b"strl", chunk(b"strh", strh) + chunk(b"strf", strf)))
    return chunk(b"RIFF", b"AVI " + hdrl + lst(b"movi", movi))


def data_url(data, kind="image/png"):
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def video_part(url):
    return {"type": "video_url", "video_url": {"url": url}}


class MediaHandler(http_server.BaseHTTPRequestHandler):
    """The media server: files, a redirect chain, a slow answer, an oversized one."""
    port = 0

    def log_message(self, *args):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def do_GET(self):
        if self.path == "/cat.png":
            return self.send(200, png(112, 112, seed=3), [("Content-Type", "image/png")])
        if self.path == "/clip.avi":
            return self.send(200, avi(), [("Content-Type", "video/x-msvideo")])
        if self.path == "/hop1":
            return self.send(302, headers=[("Location", "/hop2")])
        if self.path == "/hop2":
            return self.send(301, headers=[("Location", f"http://127.0.0.1:{self.port}/cat.png")])
        if self.path == "/elsewhere":  # a host --allowed-media-domains does not list
            return self.send(302, headers=[("Location", f"http://localhost:{self.port}/cat.png")])
        if self.path.startswith("/loop"):
            n = int(self.path[5:] or 0)
            return self.send(302, headers=[("Location", f"/loop{n + 1}")])
        if self.path == "/slow.png":
            time.sleep(8)  # over the 5 s image fetch timeout
            return self.send(200, png(28, 28))
        if self.path == "/big.png":
            return self.send(200, b"\x89PNG" + bytes((32 << 20) + 16))
        return self.send(404, b"no")


class VisionServingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bm-vision-")
        cls.media = os.path.join(cls.root, "media")
        os.makedirs(cls.media)
        with open(os.path.join(cls.media, "dog.png"), "wb") as f:
            f.write(png(56, 84, seed=9))
        with open(os.path.join(cls.root, "secret.png"), "wb") as f:
            f.write(png(56, 56))
        os.symlink(os.path.join(cls.root, "secret.png"), os.path.join(cls.media, "link.png"))
        cls.server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), MediaHandler)
        MediaHandler.port = cls.server.server_address[1]
        cls.media_base = f"http://127.0.0.1:{MediaHandler.port}"
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.vl_path = make_tiny_model(cls.root, "qwen2.5-vl", name="tiny-vl-media", tool_args=["--processor-template"])
        cls.text_path = make_tiny_model(cls.root, "qwen2.5", name="tiny-text")
        cls.daemon = Daemon().start()
        cls.base = f"http://127.0.0.1:{cls.daemon.http_port}"
        for path, extra in ((cls.vl_path, ["--allowed-local-media-path", cls.media,
                                           "--allowed-media-domains", "127.0.0.1",
                                           "--limit-mm-per-prompt", '{"image": 3, "video": 1}']),
                            (cls.text_path, [])):
            r = cls.daemon.cli("chat", "serve", path, "--backend", "cpu", "--kv-cache-bytes", str(64 << 20), *extra,
                               timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"serve {path} failed ({r.returncode}): {r.stderr}\n{cls.daemon.read_log()}")
        cls.vl = os.path.basename(cls.vl_path)
        cls.text = os.path.basename(cls.text_path)
        if openai is not None:
            cls.client = openai.OpenAI(base_url=cls.base + "/v1", api_key="unused", max_retries=0, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.close()
        cls.server.shutdown()

    def require_sdk(self):
        if openai is None:
            self.fail("the openai package is missing: run deploy/run-tests.sh (it installs tests/requirements.txt)")

    def tokenize(self, messages, **extra):
        status, body = http("POST", self.base + "/tokenize", {"model": self.vl, "messages": messages, **extra})
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def chat(self, messages, model=None, **extra):
        return http("POST", self.base + "/v1/chat/completions",
                    {"model": model or self.vl, "messages": messages, "max_tokens": 2, **extra})

    def assert_400(self, result, *fragments, param=None):
        status, body = result
        self.assertEqual(status, 400, body)
        err = json.loads(body)["error"]
        for fragment in fragments:
            self.assertIn(fragment, err["message"])
        if param is not None:
            self.assertEqual(err["param"], param)
        return err["message"]

    @staticmethod
    def runs(tokens, pad):
        """Lengths of the runs of `pad` in `tokens`."""
        out, n = [], 0
        for t in tokens + [None]:
            if t == pad:
                n += 1
            elif n:
                out.append(n)
                n = 0
        return out

    def image_message(self, url, text="What is in the picture?"):
        return [{"role": "user", "content": [{"type": "text", "text": text}, image_part(url)]}]

    # --- the daemon's side: parsing, preprocessing, expansion (no engine media support needed) ---------------
    def test_tokenize_counts_the_expanded_image_tokens(self):
        """A 112x112 image is 8x8 patches, 16 merged tokens: the prompt holds one run of 16 <|image_pad|> where the
        template rendered one, and counts 15 more tokens than the same text with the single pad."""
        got = self.tokenize(self.image_message(data_url(png(112, 112))))
        self.assertEqual(self.runs(got["tokens"], IMAGE_PAD), [16])
        self.assertEqual(got["count"], len(got["tokens"]))
        status, body = http("POST", self.base + "/tokenize", {
            "model": self.vl, "add_special_tokens": False,
            "prompt": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is in the "
                      "picture?<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["count"] + 15, got["count"])
        # min/max_pixels of the request resize it: at most 56x56 → 4 tokens.
        small = self.tokenize(self.image_message(data_url(png(112, 112))),
                              mm_processor_kwargs={"max_pixels": 56 * 56})
        self.assertEqual(self.runs(small["tokens"], IMAGE_PAD), [4])

    def test_tokenize_counts_video_tokens_and_several_images_in_every_turn(self):
        messages = [
            {"role": "user", "content": [image_part(data_url(png(56, 56))), {"type": "text", "text": "and"},
                                         image_part(data_url(png(112, 56)))]},
            {"role": "assistant", "content": "Two gradients."},
            {"role": "user", "content": [video_part(data_url(avi(), "video/x-msvideo")),
                                         {"type": "text", "text": "What happens?"}]}]
        got = self.tokenize(messages)
        self.assertEqual(self.runs(got["tokens"], IMAGE_PAD), [4, 8])
        video_runs = self.runs(got["tokens"], VIDEO_PAD)
        self.assertEqual(len(video_runs), 1)
        # 8 frames at 4 fps sampled at 2 fps: 4 frames, t = 2; each frame resized within qwen-vl-utils' budget.
        self.assertEqual(video_runs[0] % 2, 0)
        self.assertGreater(video_runs[0], 0)

    def test_local_files_only_inside_the_allowed_folder(self):
        dog = os.path.join(self.media, "dog.png")
        self.assertEqual(self.runs(self.tokenize(self.image_message("file://" + dog))["tokens"], IMAGE_PAD), [6])
        self.assertEqual(self.runs(self.tokenize(self.image_message(dog))["tokens"], IMAGE_PAD), [6])
        for escape in (os.path.join(self.media, "link.png"), os.path.join(self.media, "..", "secret.png"),
                       "file://" + os.path.join(self.root, "secret.png"), "/etc/passwd"):
            with self.subTest(escape=escape):
                self.assert_400(self.chat(self.image_message(escape)), "outside the folder --allowed-local-media-path")
        self.assert_400(self.chat(self.image_message(os.path.join(self.media, "none.png"))), "not a readable file")

    def test_http_only_from_allowed_hosts_with_bounded_fetches(self):
        got = self.tokenize(self.image_message(self.media_base + "/cat.png"))
        self.assertEqual(self.runs(got["tokens"], IMAGE_PAD), [16])
        got = self.tokenize(self.image_message(self.media_base + "/hop1"))  # two redirects, each checked
        self.assertEqual(self.runs(got["tokens"], IMAGE_PAD), [16])
        got = self.tokenize([{"role": "user", "content": [video_part(self.media_base + "/clip.avi")]}])
        self.assertEqual(len(self.runs(got["tokens"], VIDEO_PAD)), 1)
        cases = [(f"http://localhost:{MediaHandler.port}/cat.png", "'localhost' is not one --allowed-media-domains"),
                 (self.media_base + "/elsewhere", "redirects to a host --allowed-media-domains does not list"),
                 (self.media_base + "/loop", "redirects more than 3 times"),
                 (self.media_base + "/missing.png", "answered HTTP 404"),
                 (self.media_base + "/big.png", "over the limit of 33554432 bytes"),
                 (self.media_base + "/slow.png", "within 5 s"),
                 ("ftp://127.0.0.1/cat.png", "is not a data:, file:// or http(s):// URL"),
                 ("http://127.0.0.1:1/cat.png", "could not be fetched")]
        for url, fragment in cases:
            with self.subTest(url=url):
                self.assert_400(self.chat(self.image_message(url)), fragment, param="messages[0].content[1]")

    def test_bad_media_input_is_a_400_with_one_sentence(self):
        def read(name):
            with open(os.path.join(BAD, name), "rb") as f:
                return f.read()
        part = "messages[0].content[1]"
        self.assert_400(self.chat(self.image_message(data_url(read("truncated_palette_200x150.png")))), param=part)
        self.assert_400(self.chat(self.image_message(data_url(read("garbled_plain_45x45.gif")))), param=part)
        self.assert_400(self.chat(self.image_message(data_url(read("not_an_image.bmp")))), param=part)
        self.assert_400(self.chat(self.image_message(data_url(read("bomb_30000x30000.jpg")))), "over the limit",
                        param=part)
        self.assert_400(self.chat(self.image_message("data:image/png;base64,@@@")), "base64", param=part)
        self.assert_400(self.chat([{"role": "user", "content": [video_part(data_url(b"RIFF" + bytes(200)))]}]),
                        param="messages[0].content[0]")
        self.assert_400(self.chat([{"role": "user", "content": [video_part(data_url(png(56, 56)))]}]),
                        param="messages[0].content[0]")
        # More than --limit-mm-per-prompt (3 images, 1 video), counted before anything is decoded.
        four = [{"role": "user", "content": [image_part(data_url(png(28, 28)))] * 4}]
        self.assert_400(self.chat(four), "4 images, more than the 3 per prompt", "--limit-mm-per-prompt")
        two_videos = [{"role": "user", "content": [video_part("data:video/avi;base64,AAAA")] * 2}]
        self.assert_400(self.chat(two_videos), "2 videos, more than the 1")
        # Malformed parts.
        for bad in ({"type": "image_url"}, {"type": "image_url", "image_url": "data:x"},
                    {"type": "image_url", "image_url": {"url": 3}}, {"type": "video_url", "video_url": {}},
                    {"type": "image_url", "image_url": {"url": "data:x", "detail": "ultra"}}):
            with self.subTest(part=bad):
                self.assert_400(self.chat([{"role": "user", "content": [bad]}]), param="messages[0].content[0]")
        self.assert_400(self.chat([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
                        "not supported")
        # The pad token typed in the text: one more pad than images.
        self.assert_400(self.chat(self.image_message(data_url(png(28, 28)), text="<|image_pad|> here")),
                        "2 <|image_pad|> tokens for 1 images")
        # A pad token with no media at all: in a text chat and in a completion prompt.
        self.assert_400(self.chat([{"role": "user", "content": "look: <|image_pad|>"}]), "with no image or video")
        self.assert_400(http("POST", self.base + "/v1/completions", {"model": self.vl, "prompt": "<|video_pad|>",
                                                                       "max_tokens": 1}),
                        "with no image or video", param="prompt")
        # Bad mm_processor_kwargs (checked with or without media).
        for kwargs, fragment in (({"max_pixels": "big"}, "max_pixels"), ({"fps": -1}, "fps"),
                                 ({"min_pixels": 5000, "max_pixels": 4000}, "above max_pixels"),
                                 ({"crop": True}, "does not take"), ("x", "must be an object")):
            with self.subTest(kwargs=kwargs):
                self.assert_400(self.chat(self.image_message(data_url(png(28, 28))), mm_processor_kwargs=kwargs),
                                fragment, param="mm_processor_kwargs")
        # More image tokens than the context holds: refused before the pixels are made.
        self.assert_400(self.chat(self.image_message(data_url(png(2000, 2000))),
                                  mm_processor_kwargs={"min_pixels": 12845056}), "more than the model's context")
        # The daemon is still fine.
        self.assertEqual(http("GET", self.base + "/health")[0], 200)

    def test_text_only_models_refuse_media_parts(self):
        self.assert_400(self.chat(self.image_message(data_url(png(28, 28))), model=self.text), "accepts text only")
        self.assert_400(self.chat([{"role": "user", "content": [video_part("data:video/avi;base64,AAAA")]}],
                                  model=self.text), "accepts text only")

    def test_media_settings_are_shown_by_ps(self):
        ps = self.daemon.cli_json("chat", "ps")
        m = {x["name"]: x for x in ps["models"]}[self.vl]
        self.assertEqual(m["options"]["limit_mm_per_prompt"], '{"image":3,"video":1}')
        self.assertEqual(m["options"]["allowed_media_domains"], "127.0.0.1")
        self.assertEqual(m["options"]["allowed_local_media_path"], os.path.realpath(self.media))
        r = self.daemon.cli("chat", "serve", self.text_path, "--backend", "cpu", "--limit-mm-per-prompt", "{\"audio\": 1}")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the modalities are image and video", r.stderr)

    # --- [engine] generation from images and videos -----------------------------------------------------------
    def test_image_chat_non_streaming_and_streaming(self):
        """[engine] usage.prompt_tokens is the expanded count /tokenize gives."""
        self.require_sdk()
        messages = self.image_message(data_url(png(112, 112)))
        expected = self.tokenize(messages)["count"]
        r = self.client.chat.completions.create(model=self.vl, messages=messages, max_tokens=4, temperature=0,
                                                extra_body={"ignore_eos": True})
        self.assertEqual(r.usage.prompt_tokens, expected)
        self.assertEqual(r.usage.completion_tokens, 4)
        self.assertEqual(r.choices[0].finish_reason, "length")
        stream = self.client.chat.completions.create(model=self.vl, messages=messages, max_tokens=4, temperature=0,
                                                     stream=True, stream_options={"include_usage": True},
                                                     extra_body={"ignore_eos": True})
        chunks = list(stream)
        usage = [c.usage for c in chunks if c.usage is not None]
        self.assertEqual(len(usage), 1)
        self.assertEqual(usage[0].prompt_tokens, expected)
        self.assertEqual(usage[0].completion_tokens, 4)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(streamed, r.choices[0].message.content)  # greedy: the same tokens both ways

    def test_awq_and_tensor_parallel_vl_models_serve_images(self):
        """[engine] The AWQ form of a Qwen2.5-VL model (its language model's linear layers AWQ int4, the tower float,
        as the published AWQ checkpoints) and the float model split over two CPU ranks answer an image chat; usage
        counts the image's tokens."""
        awq = make_tiny_model(self.root, "qwen2.5-vl", name="tiny-vl-awq", quantization="awq-int4",
                              tool_args=["--processor-template"])
        tp = make_tiny_model(self.root, "qwen2.5-vl", name="tiny-vl-tp2", tool_args=["--processor-template"])
        for path, extra in ((awq, []), (tp, ["--tensor-parallel-size", "2", "--threads", "2"])):
            r = self.daemon.cli("chat", "serve", path, "--backend", "cpu", "--kv-cache-bytes", str(32 << 20), *extra,
                                timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr + self.daemon.read_log())
            name = os.path.basename(path)
            try:
                messages = self.image_message(data_url(png(84, 56)))
                status, body = http("POST", self.base + "/tokenize", {"model": name, "messages": messages})
                self.assertEqual(status, 200, body)
                expected = json.loads(body)["count"]
                status, body = self.chat(messages, model=name, ignore_eos=True)
                self.assertEqual(status, 200, body)
                reply = json.loads(body)
                self.assertEqual(reply["usage"]["prompt_tokens"], expected)
                self.assertEqual(reply["usage"]["completion_tokens"], 2)
            finally:
                self.assertEqual(self.daemon.cli("chat", "stop", name).returncode, 0)

    def test_video_chat(self):
        """[engine]"""
        self.require_sdk()
        messages = [{"role": "user", "content": [video_part(data_url(avi(), "video/x-msvideo")),
                                                 {"type": "text", "text": "What happens?"}]}]
        expected = self.tokenize(messages)["count"]
        r = self.client.chat.completions.create(model=self.vl, messages=messages, max_tokens=3,
                                                extra_body={"ignore_eos": True})
        self.assertEqual(r.usage.prompt_tokens, expected)
        self.assertEqual(r.usage.completion_tokens, 3)

    def test_image_in_an_earlier_turn_and_several_images(self):
        """[engine]"""
        self.require_sdk()
        messages = [{"role": "user", "content": [image_part(data_url(png(56, 56, 1))), image_part(
                        self.media_base + "/cat.png"), {"type": "text", "text": "Which is brighter?"}]},
                    {"role": "assistant", "content": "The second."},
                    {"role": "user", "content": "Why?"}]
        expected = self.tokenize(messages)["count"]
        r = self.client.chat.completions.create(model=self.vl, messages=messages, max_tokens=2,
                                                extra_body={"ignore_eos": True})
        self.assertEqual(r.usage.prompt_tokens, expected)
        # The same pixels again hit the prefix cache (the hash keys the blocks); different ones must not change
        # the count, only the content.
        r2 = self.client.chat.completions.create(model=self.vl, messages=messages, max_tokens=2,
                                                 extra_body={"ignore_eos": True})
        self.assertEqual(r2.usage.prompt_tokens, expected)


if __name__ == "__main__":
    unittest.main()
