#!/usr/bin/env python3
"""Goldens for engine/models/vision_encoder: a small random-weight Qwen2.5-VL vision tower built with transformers'
own Qwen2_5_VisionTransformerPretrainedModel, run in float32 on four inputs.

Writes under --out (tests/data/models/qwen2_5_vl_vision/):
  config.json        {"model_type": "qwen2_5_vl", "vision_config": {...}}: the real 3B vision config with the
                     widths shrunk (depth 4, full attention on blocks 1 and 3, hidden 64, 2 heads of 32,
                     intermediate 120, out_hidden_size 64); patch 14, merge 2, temporal patch 2, window 112 kept.
  model.safetensors  the tower's weights, F32, under the checkpoint's names (visual.*).
  cases.safetensors  per case i: pixel_values_i (BF16 values: the inputs are rounded to bf16 so they can be stored
                     in half the bytes; the tower reads them as float32, exactly), grid_thw_i (I32 [n, 3]),
                     patch_embed_i (F32, after the patch embedding, original patch order), block0_i (F32, after
                     block 0, in window order), embeds_i (F32 [tokens, out_hidden_size], the merger's output).
  cases.json         the case names and grids, and the versions used.
  rope_index.json    M-RoPE position ids: for prompts of text, image and video tokens (the real config's token
                     ids), what Qwen2_5_VLModel.get_rope_index returns (3 rows of positions and the delta).

Needs torch, transformers, safetensors, numpy (not needed by the C++ tests, which read the committed files):
  python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch transformers safetensors numpy
  /work/venv-torch/bin/python tests/tools/vision_make_encoder_fixtures.py --out tests/data/models/qwen2_5_vl_vision
"""
import argparse
import types
import json
import pathlib

import numpy as np
import safetensors.torch
import torch
import transformers
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel, Qwen2_5_VLModel

VISION_CONFIG = {
    "depth": 4,
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 120,
    "num_heads": 2,
    "in_chans": 3,
    "out_hidden_size": 64,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [1, 3],
    "tokens_per_second": 2,
    "temporal_patch_size": 2,
}

# (name, grids): one small image; an image spanning 2 x 3 windows of 8 x 8 patches, the last row and column
# partial; two images in one call; a video of two temporal patches (t = 2).
CASES = [
    ("small_image", [[1, 4, 6]]),
    ("windows_image", [[1, 12, 20]]),
    ("two_images", [[1, 4, 4], [1, 6, 10]]),
    ("video", [[2, 6, 8]]),
]

IMAGE_TOKEN_ID = 151655  # Qwen2.5-VL-3B/7B config.json
VIDEO_TOKEN_ID = 151656
VISION_START_TOKEN_ID = 151652
VISION_END_TOKEN_ID = 151653

# (name, prompt pieces, image grids, video grids, second_per_grid_ts). A piece is a number of text tokens, "image"
# or "video" (the next grid's t*h*w/4 pad tokens between vision start/end tokens).
ROPE_CASES = [
    ("text_only", [7], [], [], None),
    ("image_in_text", [3, "image", 2], [[1, 4, 6]], [], None),
    ("image_first", ["image", 4], [[1, 8, 4]], [], None),
    ("two_images_and_video", [2, "image", 1, "image", 3, "video", 2], [[1, 4, 4], [1, 6, 10]], [[2, 6, 8]], [1.0]),
    ("video_fraction_of_a_second", [1, "video", 1], [], [[4, 4, 6]], [2.0 / 3.0]),
    ("two_videos_default_interval", ["video", 2, "video"], [], [[3, 2, 2], [2, 4, 2]], None),
    ("wide_video_then_image", [5, "video", "image", 1], [[1, 2, 10]], [[2, 12, 4]], [0.5]),
]


def rope_index_cases():
    text_config = types.SimpleNamespace()
    vision_config = types.SimpleNamespace(spatial_merge_size=2, tokens_per_second=VISION_CONFIG["tokens_per_second"])
    fake_model = types.SimpleNamespace(
        config=types.SimpleNamespace(vision_config=vision_config, text_config=text_config))
    # get_vision_position_ids reads nothing from self.
    fake_model.get_vision_position_ids = lambda *a, **k: Qwen2_5_VLModel.get_vision_position_ids(None, *a, **k)
    out = []
    for name, pieces, image_grids, video_grids, seconds in ROPE_CASES:
        ids = []
        grids = {"image": iter(image_grids), "video": iter(video_grids)}
        for i, piece in enumerate(pieces):
            if isinstance(piece, int):
                ids += [1000 + i * 10 + j for j in range(piece)]
            else:
                t, h, w = next(grids[piece])
                pad = IMAGE_TOKEN_ID if piece == "image" else VIDEO_TOKEN_ID
                ids += [VISION_START_TOKEN_ID] + [pad] * (t * h * w // 4) + [VISION_END_TOKEN_ID]
        input_ids = torch.tensor([ids], dtype=torch.int64)
        types_ = torch.zeros_like(input_ids, dtype=torch.int32)
        types_[input_ids == IMAGE_TOKEN_ID] = 1
        types_[input_ids == VIDEO_TOKEN_ID] = 2
        positions, delta = Qwen2_5_VLModel.get_rope_index(
            fake_model, input_ids, types_,
            image_grid_thw=torch.tensor(image_grids, dtype=torch.int64) if image_grids else None,
            video_grid_thw=torch.tensor(video_grids, dtype=torch.int64) if video_grids else None,
            second_per_grid_ts=torch.tensor(seconds, dtype=torch.float32) if seconds is not None else None)
        out.append({"name": name, "input_ids": ids, "image_grid_thw": image_grids, "video_grid_thw": video_grids,
                    "second_per_grid_ts": seconds, "position_ids": positions[:, 0, :].tolist(),
                    "delta": int(delta.reshape(-1)[0])})
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)

    config = Qwen2_5_VLVisionConfig(**{k: v for k, v in VISION_CONFIG.items() if k != "in_chans"})
    config._attn_implementation = "eager"
    model = Qwen2_5_VisionTransformerPretrainedModel(config).float().eval()
    # Random weights of a realistic scale: norms around 1, linear layers ~ 1/sqrt(fan_in), biases small.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("ln_q.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.02 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in**0.5)

    weights = {f"visual.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(weights, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    (args.out / "config.json").write_text(
        json.dumps({"model_type": "qwen2_5_vl", "vision_config": VISION_CONFIG}, indent=2) + "\n")

    captured = {}
    model.patch_embed.register_forward_hook(lambda m, i, o: captured.__setitem__("patch_embed", o.detach().clone()))
    model.blocks[0].register_forward_hook(lambda m, i, o: captured.__setitem__("block0", o.detach().clone()))

    tensors = {}
    summary = []
    for index, (name, grids) in enumerate(CASES):
        grid = torch.tensor(grids, dtype=torch.int64)
        num_patches = int(grid.prod(dim=1).sum())
        pixels = torch.randn(num_patches, 3 * 2 * 14 * 14).to(torch.bfloat16)
        with torch.no_grad():
            out = model(pixels.float(), grid_thw=grid)
        embeds = out.pooler_output if hasattr(out, "pooler_output") else out
        tensors[f"pixel_values_{index}"] = pixels.contiguous()
        tensors[f"grid_thw_{index}"] = grid.to(torch.int32).contiguous()
        tensors[f"patch_embed_{index}"] = captured["patch_embed"].float().contiguous()
        tensors[f"block0_{index}"] = captured["block0"].float().contiguous()
        tensors[f"embeds_{index}"] = embeds.float().contiguous()
        summary.append({"name": name, "grid_thw": grids, "num_patches": num_patches,
                        "num_tokens": int(embeds.shape[0])})
    safetensors.torch.save_file(tensors, str(args.out / "cases.safetensors"))
    (args.out / "rope_index.json").write_text(json.dumps({
        "image_token_id": IMAGE_TOKEN_ID, "video_token_id": VIDEO_TOKEN_ID, "spatial_merge_size": 2,
        "tokens_per_second": VISION_CONFIG["tokens_per_second"], "cases": rope_index_cases(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }) + "\n")
    (args.out / "cases.json").write_text(json.dumps({
        "cases": summary,
        "rope_theta": config.rope_parameters["rope_theta"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
