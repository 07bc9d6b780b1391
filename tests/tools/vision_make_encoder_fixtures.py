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

Needs torch, transformers, safetensors, numpy (not needed by the C++ tests, which read the committed files):
  python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch transformers safetensors numpy
  /work/venv-torch/bin/python tests/tools/vision_make_encoder_fixtures.py --out tests/data/models/qwen2_5_vl_vision
"""
import argparse
import json
import pathlib

import numpy as np
import safetensors.torch
import torch
import transformers
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

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
    (args.out / "cases.json").write_text(json.dumps({
        "cases": summary,
        "rope_theta": config.rope_parameters["rope_theta"],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
