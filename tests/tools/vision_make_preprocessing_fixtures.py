#!/usr/bin/env python3
"""Makes the Qwen2.5-VL preprocessing fixtures under tests/data/vision/ (committed; see docs/vision.md).

Writes test images in every supported format and mode with PIL, runs transformers' PIL-based Qwen2-VL image
processor (backend="pil", the former use_fast=False; numpy tensors, no torch) with the model's real
preprocessor_config.json, and records what it produced: grid_thw and token counts, checksums of the decoded RGB
PIL sees, summary statistics of pixel_values, a strided subsample of them, and every value for the smallest
images. Also writes malformed files for the decoder's bad-input tests.

    python3 -m venv /work/venv-vision && /work/venv-vision/bin/pip install transformers pillow numpy
    /work/venv-vision/bin/python tests/tools/vision_make_preprocessing_fixtures.py \
        --model ../shared/models/Qwen/Qwen2.5-VL-3B-Instruct --out tests/data/vision
"""
import argparse
import io
import json
import pathlib
import struct
import zlib

import numpy as np
import PIL
import transformers
from PIL import Image
from transformers import AutoImageProcessor

SUBSAMPLE = 2048  # values kept per case when not all are
FULL_LIMIT = 40000  # cases with at most this many values keep them all


def scene(width, height, seed):
    """Gradients, edges and noise: content on which resampling errors would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127 + 120 * np.sin(x / max(width, 1) * 7 + seed)
    g = 127 + 120 * np.cos(y / max(height, 1) * 5 - seed)
    b = ((x // 13 + y // 9) % 2) * 200 + 20
    img = np.stack([r, g, b], -1) + rng.normal(0, 10, (height, width, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def smooth(width, height):
    """Large but compressible (keeps the max_pixels JPEG small)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    img[(x.astype(int) // 400 + y.astype(int) // 400) % 2 == 0] *= 0.6
    return img.astype(np.uint8)


def save(image, fmt, **kwargs):
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def make_images():
    """name -> encoded bytes."""
    out = {}
    out["rgb_512x384.png"] = save(Image.fromarray(scene(512, 384, 1)), "PNG")
    rgba = np.dstack([scene(300, 200, 2), np.tile(np.linspace(0, 255, 300).astype(np.uint8), (200, 1))])
    rgba[50:80, 10:60, 3] = 0
    out["rgba_300x200.png"] = save(Image.fromarray(rgba, "RGBA"), "PNG")
    # Every (colour, alpha) pair once: R = G = B = column, A = row; pins the alpha composite onto white.
    ramp = np.arange(256, dtype=np.uint8)
    pairs = np.dstack([np.tile(ramp, (256, 1))] * 3 + [np.tile(ramp[:, None], (1, 256))])
    out["alpha_pairs_256x256.png"] = save(Image.fromarray(pairs, "RGBA"), "PNG")
    out["gray_123x457.png"] = save(Image.fromarray(scene(123, 457, 3)[..., 1], "L"), "PNG")
    la = np.dstack([scene(90, 70, 4)[..., 0], np.full((70, 90), 128, np.uint8)])
    out["la_90x70.png"] = save(Image.fromarray(la, "LA"), "PNG")
    pal = Image.fromarray(scene(200, 150, 5)).quantize(colors=16)
    out["palette_200x150.png"] = save(pal, "PNG")
    out["palette_trns_64x48.png"] = save(Image.fromarray(scene(64, 48, 6)).quantize(colors=8), "PNG", transparency=3)
    # Transparency keys (tRNS) on truecolour and grayscale: the matching pixels become white.
    keyed = scene(40, 30, 22)
    keyed[5:15, 5:25] = (10, 200, 30)
    out["rgb_trns_40x30.png"] = save(Image.fromarray(keyed), "PNG", transparency=(10, 200, 30))
    gray_keyed = scene(30, 40, 23)[..., 0]
    gray_keyed[10:20, :] = 77
    out["gray_trns_30x40.png"] = save(Image.fromarray(gray_keyed, "L"), "PNG", transparency=77)
    gray16 = (np.linspace(0, 1000, 77 * 33).reshape(33, 77)).astype(np.uint16)
    out["gray16_77x33.png"] = save(Image.fromarray(gray16), "PNG")
    out["interlaced_130x60.png"] = save(Image.fromarray(scene(130, 60, 7)), "PNG")  # replaced below
    out["photo_500x333.jpg"] = save(Image.fromarray(scene(500, 333, 8)), "JPEG", quality=90)
    out["progressive_211x97.jpg"] = save(Image.fromarray(scene(211, 97, 9)), "JPEG", quality=80, progressive=True)
    out["gray_97x211.jpg"] = save(Image.fromarray(scene(97, 211, 10)[..., 2], "L"), "JPEG", quality=85)
    out["lossy_320x240.webp"] = save(Image.fromarray(scene(320, 240, 11)), "WEBP", quality=80)
    alpha_webp = np.dstack([scene(160, 90, 12), np.tile(np.linspace(255, 0, 90).astype(np.uint8)[:, None], (1, 160))])
    out["alpha_160x90.webp"] = save(Image.fromarray(alpha_webp, "RGBA"), "WEBP", lossless=True)
    webp_frames = [Image.fromarray(scene(48, 32, 21 + i)) for i in range(3)]
    out["anim_48x32.webp"] = save(webp_frames[0], "WEBP", save_all=True, append_images=webp_frames[1:], duration=80,
                                  quality=70)
    frames = [Image.fromarray(scene(120, 80, 13 + i)).quantize(colors=32) for i in range(3)]
    out["anim_120x80.gif"] = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100,
                                  transparency=5, interlace=True)
    out["plain_45x45.gif"] = save(Image.fromarray(scene(45, 45, 16)).quantize(colors=64), "GIF", interlace=False)
    out["tiny_10x10.png"] = save(Image.fromarray(scene(10, 10, 17)), "PNG")
    out["tiny_5x40.png"] = save(Image.fromarray(scene(5, 40, 18)), "PNG")
    out["large_4000x3400.jpg"] = save(Image.fromarray(smooth(4000, 3400)), "JPEG", quality=60)
    out["wide_1000x20.png"] = save(Image.fromarray(scene(1000, 20, 19)), "PNG")
    return out


def interlaced_png(rgb):
    """Adam7 PNG written by hand (PIL cannot write interlaced PNG)."""
    h, w, _ = rgb.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()
    return png_file(w, h, 2, 8, zlib.compress(raw), interlace=1)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_file(width, height, color_type, depth, idat, interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bad_files(images):
    out = {}
    # Headers that claim huge sizes on a few bytes of data: must be refused before any allocation.
    out["bomb_side_100000x100000.png"] = png_file(100000, 100000, 2, 8, zlib.compress(b"\x00" * 64))
    out["bomb_pixels_30000x30000.png"] = png_file(30000, 30000, 0, 8, zlib.compress(b"\x00" * 64))
    # Expands to gigabytes if decoded: 20000 x 20000 RGB zero rows compress to ~1 MB; kept tiny by truncation.
    gif = bytearray(images["plain_45x45.gif"])
    gif[6:10] = struct.pack("<HH", 60000, 60000)
    out["bomb_60000x60000.gif"] = bytes(gif)
    jpg = bytearray(images["gray_97x211.jpg"])
    sof = jpg.find(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)  # height, width
    out["bomb_30000x30000.jpg"] = bytes(jpg)
    for name in ["palette_200x150.png", "gray_97x211.jpg", "lossy_320x240.webp", "plain_45x45.gif"]:
        data = images[name]
        out["truncated_" + name] = data[: len(data) // 2]
        garbled = bytearray(data)
        for i in range(40, len(garbled), 7):
            garbled[i] ^= 0x5A
        out["garbled_" + name] = bytes(garbled)
    # Only what PIL refuses too is a bad file (lossy WebP decodes garbage without complaint, in PIL as here).
    for name in list(out):
        if name.startswith(("truncated_", "garbled_")) and pil_accepts(out[name]):
            del out[name]
    out["not_an_image.bmp"] = save(Image.fromarray(scene(8, 8, 20)), "BMP")
    out["magic_only.png"] = b"\x89PNG\r\n\x1a\n"
    return out


def pil_accepts(data):
    try:
        Image.open(io.BytesIO(data)).convert("RGB")
        return True
    except Exception:  # noqa: BLE001 - any failure means PIL refuses the file
        return False


def rgb_checksum(rgb):
    """Exact fingerprint of the decoded RGB bytes, easy to recompute in C++: sum of (i % 65521 + 1) * byte."""
    flat = rgb.reshape(-1).astype(np.uint64)
    weights = (np.arange(flat.size, dtype=np.uint64) % np.uint64(65521)) + np.uint64(1)
    return int(np.sum(flat * weights, dtype=np.uint64))


def decoded_rgb(data, processor):
    image = Image.open(io.BytesIO(data))
    rgb = processor.convert_to_rgb(image)
    return np.asarray(rgb)


def run_case(name, data, processor, out_dir, size=None):
    image = Image.open(io.BytesIO(data))
    kwargs = {"return_tensors": "np"}
    if size is not None:
        kwargs["size"] = {"shortest_edge": size[0], "longest_edge": size[1]}
    result = processor(images=[image], **kwargs)
    values = result["pixel_values"].astype(np.float32)
    grid = [int(v) for v in result["image_grid_thw"][0]]
    rgb = decoded_rgb(data, processor)
    case = {
        "name": name if size is None else f"{name}@{size[0]}-{size[1]}",
        "image": name,
        "decoded": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "checksum": str(rgb_checksum(rgb))},
        "grid_thw": grid,
        "num_tokens": grid[0] * grid[1] * grid[2] // processor.merge_size ** 2,
        "shape": list(values.shape),
        "stats": {
            "mean": float(values.astype(np.float64).mean()),
            "mean_abs": float(np.abs(values.astype(np.float64)).mean()),
            "min": float(values.min()),
            "max": float(values.max()),
        },
    }
    if size is not None:
        case["min_pixels"], case["max_pixels"] = size
    flat = values.reshape(-1)
    stride = 1 if flat.size <= FULL_LIMIT else flat.size // SUBSAMPLE
    kept = flat[::stride][: (flat.size if stride == 1 else SUBSAMPLE)]
    file = case["name"].replace("@", "_at_") + ".f32"
    (out_dir / "values" / file).write_bytes(kept.astype("<f4").tobytes())
    case["values"] = {"file": "values/" + file, "stride": stride, "count": int(kept.size)}
    return case


def smart_resize_table():
    """transformers' smart_resize over sizes that hit each branch and the rounding ties."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    rng = np.random.default_rng(7)
    sizes = [(h, w) for h in (1, 13, 14, 15, 27, 28, 42, 70, 98) for w in (1, 14, 42, 56, 2000)]
    sizes += [(int(h), int(w)) for h, w in rng.integers(1, 9000, size=(150, 2))]
    sizes += [(int(h), int(w)) for h, w in rng.integers(1, 400, size=(60, 2))]
    bounds = [(3136, 12845056), (3136, 1003520), (200704, 401408), (56 * 56, 56 * 56), (100, 200)]
    rows = []
    for h, w in sizes:
        for lo, hi in bounds:
            try:
                rows.append([h, w, lo, hi, *smart_resize(h, w, 28, lo, hi)])
            except ValueError:
                rows.append([h, w, lo, hi, -1, -1])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder with preprocessor_config.json")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    for sub in ["images", "bad", "values"]:
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in (out / sub).iterdir():
            f.unlink()
    processor = AutoImageProcessor.from_pretrained(args.model, backend="pil")
    images = make_images()
    images["interlaced_130x60.png"] = interlaced_png(scene(130, 60, 7))
    for name, data in images.items():
        (out / "images" / name).write_bytes(data)
    for name, data in bad_files(images).items():
        (out / "bad" / name).write_bytes(data)
    cases = [run_case(name, data, processor, out) for name, data in images.items()]
    # Per-request bounds as vLLM's mm_processor_kwargs pass them.
    for name, size in [("rgb_512x384.png", (3136, 50176)), ("photo_500x333.jpg", (200704, 401408)),
                       ("tiny_10x10.png", (12544, 50176))]:
        cases.append(run_case(name, images[name], processor, out, size))
    manifest = {
        "generator": "tests/tools/vision_make_preprocessing_fixtures.py",
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "processor": type(processor).__name__,
        "preprocessor_config": str(pathlib.Path(args.model).name),
        "cases": cases,
        "smart_resize": smart_resize_table(),
    }
    text = json.dumps(manifest, indent=1)
    # One smart_resize row per line keeps the file short and diffable.
    text = text.replace("\n   ", "").replace("\n  ]", "]")
    (out / "expected.json").write_text(text + "\n")
    print(f"{len(cases)} cases, {len(images)} images")


if __name__ == "__main__":
    main()
