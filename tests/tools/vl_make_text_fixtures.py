#!/usr/bin/env python3
"""Makes a small random-weight Qwen2.5-VL checkpoint and what Hugging Face transformers computes for text-only
prompts, so the C++ decoder test (tests/unit/engine/models/decoder_lm_test.cpp) checks the language model of a
Qwen2.5-VL checkpoint without PyTorch.

Writes into --out (tests/data/models/qwen2_5_vl-text/):
  config.json, generation_config.json, model.safetensors: a Qwen2_5_VLForConditionalGeneration saved by
  `save_pretrained` in bf16 (transformers 5 names: model.language_model.*, model.visual.*, lm_head). The text
  config is shrunk as tests/tools/model_make_reference_checkpoints.py shrinks Qwen2 (hidden 128, 4 heads of 32,
  GQA 4:2, untied head as the 7B), with mrope_section [4, 6, 6] (the real [16, 24, 24] scaled to head_dim 32);
  the vision tower is one tiny block, present only so the file has the layout of a real checkpoint.
  reference.json in model_make_reference_checkpoints.py's format: per prompt the ids, prefill logits, 16 greedy
  tokens and the logits after each, from transformers in float32 (bf16 weights upcast exactly), eager attention,
  without a KV cache. Text-only prompts: get_rope_index gives equal (t, h, w) rows, so the M-RoPE is 1-D RoPE.

Usage (needs torch + transformers; the committed outputs mean CI does not):
  /work/venv-torch/bin/python tests/tools/vl_make_text_fixtures.py --out tests/data/models/qwen2_5_vl-text
"""
import argparse
import pathlib
import shutil

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

# The Qwen2 generator's weights, prompts (its NUM_GREEDY and near-tie rule) and reference.json.
from model_make_reference_checkpoints import randomize, reference_prompts, write_reference

SEED = 44
PROMPT_LENGTHS = [3, 11, 29]

TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=320,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
    rms_norm_eps=1e-6,
    max_position_embeddings=4096,
    hidden_act="silu",
    use_sliding_window=False,
    tie_word_embeddings=False,
    bos_token_id=1,
    eos_token_id=2,
    rope_parameters=dict(rope_type="default", rope_theta=1000000.0, mrope_section=[4, 6, 6]),
)

VISION_CONFIG = dict(
    depth=1,
    hidden_act="silu",
    hidden_size=32,
    intermediate_size=48,
    num_heads=2,
    in_chans=3,
    out_hidden_size=128,
    patch_size=14,
    spatial_merge_size=2,
    window_size=112,
    fullatt_block_indexes=[0],
    tokens_per_second=2,
    temporal_patch_size=2,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = pathlib.Path(__file__).resolve().parents[2]
    parser.add_argument("--out", type=pathlib.Path, default=repo / "tests/data/models/qwen2_5_vl-text")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(SEED)
    config = Qwen2_5_VLConfig(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG, tie_word_embeddings=False,
                              image_token_id=510, video_token_id=511, vision_start_token_id=508,
                              vision_end_token_id=509)
    model = Qwen2_5_VLForConditionalGeneration(config)
    randomize(model, generator, 1.0)
    model = model.to(torch.bfloat16)
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)

    reference = Qwen2_5_VLForConditionalGeneration.from_pretrained(out, dtype=torch.float32,
                                                                   attn_implementation="eager").eval()
    special = {config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id}
    prompts = reference_prompts(reference, TEXT_CONFIG["vocab_size"], generator, out.name, PROMPT_LENGTHS, special)
    write_reference(out, "tests/tools/vl_make_text_fixtures.py", prompts)

if __name__ == "__main__":
    main()
