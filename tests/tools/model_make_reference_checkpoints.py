#!/usr/bin/env python3
"""Makes the small random-weight checkpoints under tests/data/models/ and what Hugging Face transformers computes
for them, so the C++ model tests (tests/unit/engine/models/decoder_lm_test.cpp) can compare without PyTorch.

For each model it writes, into tests/data/models/<name>/:
  config.json, generation_config.json, model.safetensors (or shards + model.safetensors.index.json), bf16 weights
  written by `save_pretrained`, and reference.json with
    prompts[i].ids             the prompt's token ids (no tokenizer: ids are random)
    prompts[i].prefill_logits  logits after the whole prompt
    prompts[i].greedy_ids      16 greedy tokens
    prompts[i].step_logits     logits after each greedy token (fed back one at a time)

The reference runs transformers in float32 on the bf16 weights (weights upcast exactly; eager attention) and
without a KV cache (every step recomputes the full sequence), so it is independent of the code under test.

Usage (needs torch + transformers; the committed outputs mean CI does not):
  .venv-torch/bin/python tests/tools/model_make_reference_checkpoints.py [--out tests/data/models]
"""
import argparse
import json
import pathlib
import shutil

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

NUM_GREEDY = 16
# A greedy step whose top two logits are closer than this is too fragile to pin (float32 rounding differences
# between implementations are around 1e-5 here); the generator refuses such a case instead of committing it.
MIN_GREEDY_MARGIN = 2e-3

COMMON = dict(
    hidden_size=128,
    intermediate_size=320,
    num_attention_heads=4,
    vocab_size=512,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
)

MODELS = {
    # Qwen2: q/k/v biases, GQA 4:2, tied embeddings (Qwen2.5-0.5B..3B style).
    "qwen2-tied": dict(
        cls=(Qwen2Config, Qwen2ForCausalLM),
        config=dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, tie_word_embeddings=True,
                    max_position_embeddings=4096, rope_theta=1000000.0),
        shard=None,
        seed=12,
        # A tied head scores each token by its own embedding; small embeddings keep the residual stream from
        # simply repeating the last token.
        embedding_scale=0.1,
    ),
    # Qwen2 with an untied lm_head (7B and up), saved in shards to exercise model.safetensors.index.json.
    "qwen2-untied-sharded": dict(
        cls=(Qwen2Config, Qwen2ForCausalLM),
        config=dict(COMMON, num_hidden_layers=3, num_key_value_heads=2, tie_word_embeddings=False,
                    max_position_embeddings=4096, rope_theta=10000.0),
        shard="300KB",
        seed=22,
    ),
    # Llama 3.1 (DeepSeek-R1-Distill-Llama): llama3 rope scaling with the real parameters, GQA 4:1, no biases.
    "llama3": dict(
        cls=(LlamaConfig, LlamaForCausalLM),
        config=dict(COMMON, num_hidden_layers=2, num_key_value_heads=1, head_dim=32, tie_word_embeddings=False,
                    max_position_embeddings=131072, attention_bias=False, mlp_bias=False,
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                      original_max_position_embeddings=8192),
                    rope_theta=500000.0),
        shard=None,
        seed=33,
    ),
}

PROMPT_LENGTHS = [1, 7, 16, 37]


def randomize(model, generator, embedding_scale):
    """Weights with spread: norms around 1 and nonzero biases, so a missing multiply or bias shows."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=generator))
            elif name.endswith(".bias"):
                param.copy_(0.2 * torch.randn(param.shape, generator=generator))
            elif "embed_tokens" in name:
                param.copy_(embedding_scale * torch.randn(param.shape, generator=generator))
            else:
                fan_in = param.shape[-1]
                param.copy_(torch.randn(param.shape, generator=generator) * (1.5 / fan_in ** 0.5))


def logits_of(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0, -1].to(torch.float32)


def top2_margin(logits):
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def rounded(values):
    return [float(f"{v:.7g}") for v in values.tolist()]


def make(name, spec, out_root):
    config_cls, model_cls = spec["cls"]
    generator = torch.Generator().manual_seed(spec["seed"])
    config = config_cls(**spec["config"])
    model = model_cls(config)
    randomize(model, generator, spec.get("embedding_scale", 1.0))
    model = model.to(torch.bfloat16)
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    kwargs = dict(max_shard_size=spec["shard"]) if spec["shard"] else {}
    model.save_pretrained(out, **kwargs)

    reference = model_cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    prompts = reference_prompts(reference, config.vocab_size, generator, name)
    write_reference(out, "tests/tools/model_make_reference_checkpoints.py", prompts)


def reference_prompts(reference, vocab_size, generator, what, lengths=PROMPT_LENGTHS, replaced=()):
    """For random prompts of each of `lengths` (ids in `replaced` become 3): the prefill logits, NUM_GREEDY
    greedy tokens and the logits after each, recomputed over the whole sequence (no KV cache)."""
    prompts = []
    for length in lengths:
        ids = torch.randint(3, vocab_size, (length,), generator=generator).tolist()
        ids = [i if i not in replaced else 3 for i in ids]
        prefill = logits_of(reference, ids)
        sequence = list(ids)
        greedy, steps = [], []
        logits = prefill
        for _ in range(NUM_GREEDY):
            margin = top2_margin(logits)
            if margin < MIN_GREEDY_MARGIN:
                raise SystemExit(f"{what}: prompt of {length} tokens has a near tie ({margin}); change the seed")
            token = int(torch.argmax(logits))
            greedy.append(token)
            sequence.append(token)
            logits = logits_of(reference, sequence)
            steps.append(rounded(logits))
        prompts.append(dict(ids=ids, prefill_logits=rounded(prefill), greedy_ids=greedy, step_logits=steps))
    return prompts


def write_reference(out, generator_name, prompts):
    record = dict(
        generator=generator_name,
        transformers=transformers.__version__,
        torch=torch.__version__,
        compute_dtype="float32",
        attention="eager",
        prompts=prompts,
    )
    (out / "reference.json").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{out.name}: {size / 1e6:.2f} MB, files {files}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = pathlib.Path(__file__).resolve().parents[2]
    parser.add_argument("--out", type=pathlib.Path, default=repo / "tests/data/models")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        make(name, spec, args.out)


if __name__ == "__main__":
    main()
