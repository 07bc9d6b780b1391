#!/usr/bin/env python3
"""What Hugging Face transformers computes for prompts with images and videos on the small random-weight
Qwen2.5-VL checkpoint of vl_make_text_fixtures.py (tests/data/models/qwen2_5_vl-text/, read as it is committed),
so the C++ engine test (tests/unit/engine/runtime/engine_media_test.cpp) checks the whole multimodal forward —
vision tower, embeddings spliced in place of the pad tokens, M-RoPE positions in the language model's attention —
without PyTorch.

Writes into --model:
  media_cases.safetensors: per case c, `c.pixel_values` [patches, 1176] bf16 (random; the tests widen them) for its media
  in prompt order, concatenated.
  media_reference.json: per case its name, prompt ids (pad runs already expanded), media list (kind, grid_thw,
  second_per_grid_t), the prefill logits, 16 greedy tokens and the logits after each — recomputed over the whole
  sequence with the pixels every time (no KV cache), float32, eager attention — and the M-RoPE delta.

Usage (needs torch + transformers + safetensors; the committed outputs mean CI does not):
  /work/venv-torch/bin/python tests/tools/vl_make_media_fixtures.py --model tests/data/models/qwen2_5_vl-text
"""
import argparse
import json
import pathlib

import torch
import transformers
from safetensors.torch import save_file
from transformers import Qwen2_5_VLForConditionalGeneration

# The Qwen2 generator's greedy length, near-tie rule and rounding.
from model_make_reference_checkpoints import MIN_GREEDY_MARGIN, NUM_GREEDY, rounded, top2_margin

SEED = 45
IMAGE, VIDEO, START, END = 510, 511, 508, 509

# (name, [text run length, media, text run length, media, ...]) with media ("image", t, h, w) or
# ("video", t, h, w, second_per_grid_t). Grids in patches; h and w multiples of 2; tokens = t*h*w/4.
CASES = [
    ("one_image", [5, ("image", 1, 4, 6), 7]),
    ("two_images", [3, ("image", 1, 4, 4), 4, ("image", 1, 6, 10), 6]),
    ("image_then_long_text", [2, ("image", 1, 8, 8), 40]),
    ("video", [4, ("video", 2, 4, 4, 1.0), 5]),
    ("video_half_second", [3, ("video", 3, 4, 6, 0.5), 3, ("image", 1, 4, 4), 5]),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = pathlib.Path(__file__).resolve().parents[2]
    parser.add_argument("--model", type=pathlib.Path, default=repo / "tests/data/models/qwen2_5_vl-text")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32,
                                                               attn_implementation="eager").eval()
    vocab = model.config.text_config.vocab_size
    tensors, cases = {}, []
    for name, layout in CASES:
        ids, media, images, videos, image_grids, video_grids, seconds = [], [], [], [], [], [], []
        for part in layout:
            if isinstance(part, int):
                ids += torch.randint(3, START, (part,), generator=generator).tolist()
                continue
            kind, t, h, w = part[:4]
            patches = t * h * w
            pixels = torch.randn(patches, 1176, generator=generator).to(torch.bfloat16).to(torch.float32)
            ids += [START] + [IMAGE if kind == "image" else VIDEO] * (patches // 4) + [END]
            entry = dict(kind=kind, grid_thw=[t, h, w])
            if kind == "image":
                images.append(pixels)
                image_grids.append([t, h, w])
            else:
                videos.append(pixels)
                video_grids.append([t, h, w])
                seconds.append(part[4])
                entry["second_per_grid_t"] = part[4]
            media.append(entry)
            tensors.setdefault(name, []).append(pixels)
        inputs = {}
        if images:
            inputs["pixel_values"] = torch.cat(images)
            inputs["image_grid_thw"] = torch.tensor(image_grids)
        if videos:
            inputs["pixel_values_videos"] = torch.cat(videos)
            inputs["video_grid_thw"] = torch.tensor(video_grids)
            inputs["second_per_grid_ts"] = torch.tensor(seconds)

        def token_types(sequence):
            # transformers 5 computes M-RoPE positions only when told which tokens are image (1) and video (2) pads.
            ids_ = torch.tensor([sequence])
            types_ = torch.zeros_like(ids_, dtype=torch.int32)
            types_[ids_ == IMAGE] = 1
            types_[ids_ == VIDEO] = 2
            return ids_, types_

        def logits_of(sequence):
            ids_, types_ = token_types(sequence)
            with torch.no_grad():
                out = model(input_ids=ids_, mm_token_type_ids=types_, use_cache=False, **inputs)
            return out.logits[0, -1].to(torch.float32)

        with torch.no_grad():
            ids_, types_ = token_types(ids)
            _, delta = model.model.get_rope_index(ids_, types_, image_grid_thw=inputs.get("image_grid_thw"),
                                                  video_grid_thw=inputs.get("video_grid_thw"),
                                                  second_per_grid_ts=inputs.get("second_per_grid_ts"))
        prefill = logits_of(ids)
        sequence, greedy, steps, logits = list(ids), [], [], prefill
        for _ in range(NUM_GREEDY):
            margin = top2_margin(logits)
            if margin < MIN_GREEDY_MARGIN:
                raise SystemExit(f"{name}: a near tie ({margin}); change the seed")
            token = int(torch.argmax(logits))
            greedy.append(token)
            sequence.append(token)
            logits = logits_of(sequence)
            steps.append(rounded(logits))
        cases.append(dict(name=name, ids=ids, media=media, rope_delta=int(delta.reshape(-1)[0]),
                          prefill_logits=rounded(prefill), greedy_ids=greedy, step_logits=steps))
        assert max(ids) < vocab
    save_file({f"{name}.pixel_values": torch.cat(parts).to(torch.bfloat16).contiguous() for name, parts in tensors.items()},
              str(args.model / "media_cases.safetensors"))
    record = dict(generator="tests/tools/vl_make_media_fixtures.py", transformers=transformers.__version__,
                  torch=torch.__version__, compute_dtype="float32", attention="eager", cases=cases)
    (args.model / "media_reference.json").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    size = sum((args.model / f).stat().st_size for f in ("media_cases.safetensors", "media_reference.json"))
    print(f"{len(cases)} cases, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
