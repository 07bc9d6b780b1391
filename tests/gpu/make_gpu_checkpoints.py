#!/usr/bin/env python3
"""Random-weight checkpoints with real model shapes and transformers' reference logits, for the whole-model check
of the CUDA backend (bm_cuda_model_check). Runs on the GPU machine (torch + transformers + safetensors, no network).

  make_gpu_checkpoints.py --configs DIR --out DIR [--layers NAME=L ...] [--steps 32] [--device cuda]

--configs holds one folder per model with its config.json (run-gpu-checks.sh stages them from ../shared/models).
For each: torch.manual_seed(0); AutoModelForCausalLM.from_config in bf16 (biases and norm weights perturbed so that
those paths are tested too); save_pretrained (safetensors, bf16) into OUT/NAME; then, with the same bf16 weights
upcast to float32 (eager attention), three prompts of 7, 23 and 61 random token ids are run greedily for --steps
tokens. OUT/NAME/reference/reference.json lists the prompts and greedy tokens; logits_<i>.f32 holds the float32
logits of every step ([steps, vocab]: row j after the prompt and the first j greedy tokens).
"""
import argparse
import json
import pathlib
import sys
import time

import torch
import transformers


def build(name, config_dir, out_dir, layers, steps, device):
    config = transformers.AutoConfig.from_pretrained(config_dir)
    if layers:
        config.num_hidden_layers = layers
    start = time.time()
    torch.manual_seed(0)
    # bf16 through the default dtype: the keyword for it differs between transformers 4 and 5.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    finally:
        torch.set_default_dtype(previous)
    model = model.to(torch.bfloat16)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(".bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    target = out_dir / name
    model.save_pretrained(target, safe_serialization=True)
    # The engine reads the config as the hubs ship it; newer transformers rewrite some fields on save (e.g. RoPE
    # settings into rope_parameters), so the original file goes back, with only the depth and dtype changed.
    original = json.loads((config_dir / "config.json").read_text())
    original["num_hidden_layers"] = config.num_hidden_layers
    original["torch_dtype"] = "bfloat16"
    (target / "config.json").write_text(json.dumps(original, indent=2))
    print(f"{name}: {config.num_hidden_layers} layers, "
          f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params, saved in {time.time() - start:.1f} s",
          flush=True)

    model = model.to(torch.float32).eval()
    reference = target / "reference"
    reference.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(1)
    vocab = config.vocab_size
    prompts = []
    for i, length in enumerate((7, 23, 61)):
        ids = torch.randint(0, min(vocab, 100000), (length,), generator=generator).tolist()
        tokens = torch.tensor([ids], device=device)
        rows, generated = [], []
        past = None
        with torch.no_grad():
            for _ in range(steps):
                result = model(input_ids=tokens, past_key_values=past, use_cache=True)
                past = result.past_key_values
                logits = result.logits[0, -1].float()
                rows.append(logits.cpu())
                next_id = int(torch.argmax(logits))
                generated.append(next_id)
                tokens = torch.tensor([[next_id]], device=device)
        torch.stack(rows).numpy().astype("float32").tofile(reference / f"logits_{i}.f32")
        prompts.append({"ids": ids, "generated": generated, "logits": f"logits_{i}.f32"})
    (reference / "reference.json").write_text(json.dumps({"vocab_size": vocab, "prompts": prompts}))
    print(f"{name}: reference logits for {len(prompts)} prompts x {steps} steps in {time.time() - start:.1f} s",
          flush=True)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--layers", action="append", default=[], help="NAME=L: keep L decoder layers of NAME")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", action="append", default=[], help="build only these names")
    args = parser.parse_args()
    layers = dict(item.split("=", 1) for item in args.layers)
    names = sorted(p.name for p in args.configs.iterdir() if (p / "config.json").exists())
    if args.only:
        names = [n for n in names if n in args.only]
    if not names:
        sys.exit(f"no <name>/config.json under {args.configs}")
    for name in names:
        build(name, args.configs / name, args.out, int(layers.get(name, 0)), args.steps, args.device)


if __name__ == "__main__":
    main()
