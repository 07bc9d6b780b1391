#!/usr/bin/env python3
"""Makes a tiny random-weight model folder that bmserverd can serve on the CPU backend in tests.

Architecture Qwen2ForCausalLM (or LlamaForCausalLM with --llama) at toy width, with the REAL tokenizer files of
the family copied from ../shared/models (Qwen2.5: vocab.json + merges.txt + tokenizer_config.json; the R1-Distill
flavour swaps in that family's chat template and special tokens), so prompts, templates and detokenization are
the real ones while the weights are random. Written with numpy (bf16 bytes by hand), so CI needs no PyTorch.
With --quantization the linear layers are stored as a GPTQ (v1, symmetric) or AWQ (GEMM) checkpoint stores them:
random packed integers, valid zero-points, F16 scales; every other tensor in F16, as the published ones are.

usage: make_tiny_served_model.py OUT_DIR [--flavour qwen2.5|qwq|r1-qwen|qwen2.5-vl] [--seed N]
                                 [--quantization gptq-int4|gptq-int8|awq-int4] [--processor-template]

qwen2.5-vl takes Qwen2.5-VL-3B-Instruct's tokenizer_config.json (its chat template, with tools), its
preprocessor_config.json and its architecture (Qwen2_5_VLForConditionalGeneration, the 3B's config.json layout:
M-RoPE sections, a vision_config, the language model under model.* as the hub's files have it), and a random-weight
vision tower under the checkpoint's visual.* names with the shapes engine/models/vision_encoder.cpp checks, shrunk
(depth 2 with full attention on block 1, hidden 32, 2 heads, intermediate 48; out_hidden_size = the text hidden
size, patch, merge, temporal patch and window sizes as the real model). --processor-template also copies the 3B's
chat_template.json (the processor's template, which renders image and video parts and which bmserverd prefers, as
for the real folder); without it the folder keeps the tokenizer's tool-calling template, which transformers'
AutoTokenizer reads too.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np


def bf16_bytes(a):
    """float32 array -> bf16 bytes (round to nearest even)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded.tobytes()


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        if array.dtype == np.float32:
            dtype, data = "BF16", bf16_bytes(array)
        else:  # already in its stored type (I32 packed integers, F16)
            dtype = {np.dtype(np.int32): "I32", np.dtype(np.float16): "F16"}[array.dtype]
            data = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def quantize_tensors(t, scheme, rng, group=32):
    """Linear weights → packed GPTQ/AWQ tensors of random integers (valid zero-points); the rest → F16."""
    out = {}
    bits = 8 if scheme == "gptq-int8" else 4
    per_word = 32 // bits
    for name, array in t.items():
        if not (name.endswith("proj.weight") and array.ndim == 2):
            out[name] = array.astype(np.float16)
            continue
        prefix = name[: -len(".weight")]
        n_out, n_in = array.shape
        groups = n_in // group
        words = rng.integers(0, 2 ** 32, size=(n_in // per_word, n_out) if scheme != "awq-int4" else (n_in, n_out // 8),
                             dtype=np.uint64).astype(np.uint32)
        out[prefix + ".qweight"] = words.view(np.int32)
        if scheme == "awq-int4":
            zeros = rng.integers(0, 2 ** 32, size=(groups, n_out // 8), dtype=np.uint64).astype(np.uint32)
        else:  # symmetric, stored minus one (GPTQ v1): every field 2^(bits-1) - 1
            field = (1 << (bits - 1)) - 1
            word = sum(field << (bits * i) for i in range(per_word))
            zeros = np.full((groups, n_out // per_word), word, dtype=np.uint32)
        out[prefix + ".qzeros"] = zeros.view(np.int32)
        scale = 0.01 if bits == 4 else 0.0006
        out[prefix + ".scales"] = (rng.uniform(0.5, 1.5, size=(groups, n_out)) * scale).astype(np.float16)
        if scheme != "awq-int4":
            out[prefix + ".g_idx"] = (np.arange(n_in) // group).astype(np.int32)
    return out


# The real 3B's vision_config with the widths shrunk (its keys and sizes otherwise), so the tower stays ~100 KB.
VISION_CONFIG = {"depth": 2, "hidden_act": "silu", "hidden_size": 32, "intermediate_size": 48, "num_heads": 2,
                 "in_chans": 3, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                 "fullatt_block_indexes": [1], "tokens_per_second": 2, "temporal_patch_size": 2}


def vision_tensors(vc, w):
    """visual.* tensors under the checkpoint's names, with the shapes VisionEncoder::load checks."""
    d, ff, merged = vc["hidden_size"], vc["intermediate_size"], vc["hidden_size"] * vc["spatial_merge_size"] ** 2
    t = {"visual.patch_embed.proj.weight": w(d, vc["in_chans"], vc["temporal_patch_size"], vc["patch_size"],
                                             vc["patch_size"]),
         "visual.merger.ln_q.weight": np.ones(d, np.float32),
         "visual.merger.mlp.0.weight": w(merged, merged), "visual.merger.mlp.0.bias": w(merged),
         "visual.merger.mlp.2.weight": w(vc["out_hidden_size"], merged),
         "visual.merger.mlp.2.bias": w(vc["out_hidden_size"])}
    for i in range(vc["depth"]):
        p = f"visual.blocks.{i}."
        t.update({p + "norm1.weight": np.ones(d, np.float32), p + "norm2.weight": np.ones(d, np.float32),
                  p + "attn.qkv.weight": w(3 * d, d), p + "attn.qkv.bias": w(3 * d),
                  p + "attn.proj.weight": w(d, d), p + "attn.proj.bias": w(d),
                  p + "mlp.gate_proj.weight": w(ff, d), p + "mlp.gate_proj.bias": w(ff),
                  p + "mlp.up_proj.weight": w(ff, d), p + "mlp.up_proj.bias": w(ff),
                  p + "mlp.down_proj.weight": w(d, ff), p + "mlp.down_proj.bias": w(d)})
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--flavour", default="qwen2.5", choices=["qwen2.5", "qwq", "r1-qwen", "qwen2.5-vl"])
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--quantization", default=None, choices=["gptq-int4", "gptq-int8", "awq-int4"])
    ap.add_argument("--processor-template", action="store_true",
                    help="qwen2.5-vl: also copy chat_template.json (the template that renders image/video parts)")
    ap.add_argument("--shared", default=os.environ.get("BMSERVER_SHARED_DIR",
                                                       os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")))
    args = ap.parse_args()
    models = os.path.join(args.shared, "models")
    qwen = os.path.join(models, "Qwen", "Qwen2.5-7B-Instruct")
    if not os.path.exists(os.path.join(qwen, "vocab.json")):
        sys.exit(f"missing {qwen}/vocab.json (shared/models not found)")
    os.makedirs(args.out, exist_ok=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(qwen, f), os.path.join(args.out, f))
    tok_cfg = json.load(open(os.path.join(qwen, "tokenizer_config.json")))
    if args.flavour == "qwq":
        qwq = json.load(open(os.path.join(models, "Qwen", "QwQ-32B", "tokenizer_config.json")))
        tok_cfg = qwq
    elif args.flavour == "qwen2.5-vl":
        tok_cfg = json.load(open(os.path.join(models, "Qwen", "Qwen2.5-VL-3B-Instruct", "tokenizer_config.json")))
    elif args.flavour == "r1-qwen":
        added = json.load(open(os.path.join(models, "deepseek-ai", "DeepSeek-R1-Distill-Qwen-1.5B", "added_tokens.derived.json")))
        template = open(os.path.join(models, "templates", "DeepSeek-R1-Distill.from-tokenizer_config.jinja")).read()
        decoder = {}
        for entry in (added if isinstance(added, list) else added.get("added_tokens", [])):
            decoder[str(entry["id"])] = {"content": entry["content"], "lstrip": False, "normalized": False,
                                         "rstrip": False, "single_word": False, "special": entry.get("special", True)}
        tok_cfg = {"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": decoder,
                   "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                   "pad_token": "<｜end▁of▁sentence｜>", "chat_template": template, "clean_up_tokenization_spaces": False,
                   "model_max_length": 16384, "tokenizer_class": "Qwen2TokenizerFast"}
        # The upstream repo ships tokenizer.json with LlamaTokenizerFast; without tokenizer.json the same vocabulary
        # is read as a Qwen2 tokenizer that adds the BOS token (the vocab.json form docs/tokenizer.md describes).
    json.dump(tok_cfg, open(os.path.join(args.out, "tokenizer_config.json"), "w"), ensure_ascii=False, indent=2)

    vocab = 151936
    hidden, layers, heads, kv_heads, inter = 64, 2, 4, 2, 128
    head_dim = hidden // heads
    eos = [151645, 151643] if args.flavour != "r1-qwen" else 151643
    config = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "hidden_act": "silu", "max_position_embeddings": 4096,
              "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
              "vocab_size": vocab, "bos_token_id": 151643, "eos_token_id": eos, "use_sliding_window": False,
              "sliding_window": 4096, "max_window_layers": layers, "attention_dropout": 0.0,
              "initializer_range": 0.02, "use_cache": True}
    if args.flavour == "qwen2.5-vl":
        config.update({"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
                       "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
                       "image_token_id": 151655, "video_token_id": 151656,
                       # the real [16, 24, 24] of head_dim 128, scaled to head_dim 16
                       "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
                       "vision_config": VISION_CONFIG | {"out_hidden_size": hidden}})
        vl = os.path.join(models, "Qwen", "Qwen2.5-VL-3B-Instruct")
        shutil.copyfile(os.path.join(vl, "preprocessor_config.json"), os.path.join(args.out, "preprocessor_config.json"))
        if args.processor_template:
            shutil.copyfile(os.path.join(vl, "chat_template.json"), os.path.join(args.out, "chat_template.json"))
    json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    gen = {"bos_token_id": 151643, "eos_token_id": eos, "do_sample": True, "temperature": 0.7, "top_p": 0.8,
           "top_k": 20, "repetition_penalty": 1.05}
    json.dump(gen, open(os.path.join(args.out, "generation_config.json"), "w"), indent=2)

    rng = np.random.default_rng(args.seed)
    def w(*shape, scale=0.05):
        return rng.standard_normal(shape, dtype=np.float32) * scale
    t = {"model.embed_tokens.weight": w(vocab, hidden, scale=0.05), "model.norm.weight": np.ones(hidden, np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        t[p + "self_attn.q_proj.weight"] = w(heads * head_dim, hidden)
        t[p + "self_attn.q_proj.bias"] = w(heads * head_dim)
        t[p + "self_attn.k_proj.weight"] = w(kv_heads * head_dim, hidden)
        t[p + "self_attn.k_proj.bias"] = w(kv_heads * head_dim)
        t[p + "self_attn.v_proj.weight"] = w(kv_heads * head_dim, hidden)
        t[p + "self_attn.v_proj.bias"] = w(kv_heads * head_dim)
        t[p + "self_attn.o_proj.weight"] = w(hidden, heads * head_dim)
        t[p + "mlp.gate_proj.weight"] = w(inter, hidden)
        t[p + "mlp.up_proj.weight"] = w(inter, hidden)
        t[p + "mlp.down_proj.weight"] = w(hidden, inter)
    if args.quantization:
        t = quantize_tensors(t, args.quantization, rng)
        config["torch_dtype"] = "float16"
        bits = 8 if args.quantization == "gptq-int8" else 4
        config["quantization_config"] = (
            {"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": True}
            if args.quantization == "awq-int4" else
            {"quant_method": "gptq", "bits": bits, "group_size": 32, "desc_act": False, "sym": True})
        json.dump(config, open(os.path.join(args.out, "config.json"), "w"), indent=2)
    if args.flavour == "qwen2.5-vl":  # after quantization: the published AWQ checkpoints keep the tower in float too
        t.update(vision_tensors(config["vision_config"], w))
    write_safetensors(os.path.join(args.out, "model.safetensors"), t)
    print(args.out)


if __name__ == "__main__":
    main()
