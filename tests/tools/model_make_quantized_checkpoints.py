#!/usr/bin/env python3
"""Makes small random-weight GPTQ and AWQ checkpoints under tests/data/models/ and what Hugging Face transformers
computes for them, so the C++ model tests (tests/unit/engine/models/decoder_lm_test.cpp) compare without PyTorch.

The packing is the quantizers' own: gptqmodel's GPTQ QuantLinear (TorchLinear.pack, then its v2 → v1 conversion,
so the zero-points are stored minus one as AutoGPTQ and the published Qwen GPTQ checkpoints store them) and its
AWQ GEMM QuantLinear (AwqTorchLinear.pack, AutoAWQ's interleaved nibble order). Nothing of that code is copied
here: this script only chooses scales and zero-points (round-to-nearest from the random float weights; act-order
g_idx from a random permutation, as GPTQ's desc_act makes it) and calls the packers.

For each model it writes, into tests/data/models/<name>/:
  config.json with the quantization_config a published checkpoint carries, model.safetensors (qweight, qzeros,
  scales, g_idx for GPTQ; embeddings, norms, biases and lm_head in F16), and reference.json as
  model_make_reference_checkpoints.py writes it (prompts, prefill logits, 16 greedy tokens, each step's logits),
  plus `dequantized`: one layer's weights as the quantizer's own unpack (dequantize_weight, in float32) gives
  them, for the bit-for-bit unpack test.

The reference is transformers itself loading the quantized folder (from_pretrained → gptqmodel's CPU kernels for
GPTQ and AWQ) in float32, eager attention, no KV cache; reference.json says which path ran ("reference").

Usage (needs torch, transformers and gptqmodel; the committed outputs mean CI does not):
  /work/venv-quant/bin/python tests/tools/model_make_quantized_checkpoints.py [--out tests/data/models]
"""
import argparse
import json
import pathlib
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from model_make_reference_checkpoints import (MIN_GREEDY_MARGIN, NUM_GREEDY, PROMPT_LENGTHS,  # noqa: E402
                                              logits_of, randomize, rounded, top2_margin)

import gptqmodel  # noqa: E402
from gptqmodel import QuantizeConfig  # noqa: E402
from gptqmodel.nn_modules.qlinear.torch import TorchLinear  # noqa: E402
from gptqmodel.nn_modules.qlinear.torch_awq import AwqTorchLinear  # noqa: E402
from gptqmodel.utils.model import convert_gptq_v2_to_v1_format_module  # noqa: E402

COMMON = dict(
    hidden_size=128,
    intermediate_size=384,
    num_attention_heads=4,
    vocab_size=512,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
    num_hidden_layers=2,
    num_key_value_heads=2,
    tie_word_embeddings=False,
)
QWEN2 = dict(cls=(Qwen2Config, Qwen2ForCausalLM), config=dict(COMMON, max_position_embeddings=4096,
                                                                 rope_theta=1000000.0))
LLAMA3 = dict(cls=(LlamaConfig, LlamaForCausalLM),
              config=dict(COMMON, head_dim=32, max_position_embeddings=131072, attention_bias=False, mlp_bias=False,
                          rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                            original_max_position_embeddings=8192),
                          rope_theta=500000.0))

# Group size 32 (the published checkpoints use 128) so that every layer has several groups: 4 over the hidden
# size, 12 over the intermediate size; the format is the same for any group size.
MODELS = {
    "qwen2-gptq-int4": dict(QWEN2, method="gptq", bits=4, desc_act=False, seed=41),
    "qwen2-gptq-int4-act": dict(QWEN2, method="gptq", bits=4, desc_act=True, seed=42),
    "qwen2-gptq-int8": dict(QWEN2, method="gptq", bits=8, desc_act=False, seed=43),
    "qwen2-gptq-int8-act": dict(QWEN2, method="gptq", bits=8, desc_act=True, seed=44),
    "qwen2-awq": dict(QWEN2, method="awq", bits=4, desc_act=False, seed=45),
    "llama3-gptq-int4-act": dict(LLAMA3, method="gptq", bits=4, desc_act=True, seed=46),
    "llama3-awq": dict(LLAMA3, method="awq", bits=4, desc_act=False, seed=47),
}
GROUP_SIZE = 32
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
           "mlp.up_proj", "mlp.down_proj")
# The layer whose dequantized weights reference.json records for the unpack test.
UNPACK_LAYER = "model.layers.1.mlp.down_proj"


def round_to_nearest_params(weight, g_idx, groups, bits, sym):
    """Scales and zero-points [out, groups] from the float weight [out, in], as round-to-nearest chooses them."""
    maxq = 2 ** bits - 1
    out = weight.shape[0]
    scales = torch.empty(out, groups)
    zeros = torch.empty(out, groups)
    for g in range(groups):
        cols = weight[:, g_idx == g]
        lo = torch.minimum(cols.min(dim=1).values, torch.zeros(out))
        hi = torch.maximum(cols.max(dim=1).values, torch.zeros(out))
        if sym:
            scale = torch.maximum(hi.abs(), lo.abs()) * 2 / maxq
            zero = torch.full((out,), (maxq + 1) / 2)
        else:
            scale = (hi - lo) / maxq
            zero = torch.round(-lo / scale).clamp(0, maxq)
        scales[:, g] = scale.half().float()  # the checkpoint stores F16 scales: choose representable ones
        zeros[:, g] = zero
    return scales, zeros


def quantize_linear(linear, spec, generator):
    """The packed module for one nn.Linear, and its weights dequantized by the package itself (float32)."""
    in_features, out_features = linear.in_features, linear.out_features
    groups = in_features // GROUP_SIZE
    has_bias = linear.bias is not None
    weight = linear.weight.data.float()
    if spec["method"] == "gptq":
        order = torch.randperm(in_features, generator=generator) if spec["desc_act"] else torch.arange(in_features)
        g_idx = torch.empty(in_features, dtype=torch.int32)
        g_idx[order] = torch.arange(in_features, dtype=torch.int32) // GROUP_SIZE
        scales, zeros = round_to_nearest_params(weight, g_idx, groups, spec["bits"], sym=True)
        module = TorchLinear(bits=spec["bits"], group_size=GROUP_SIZE, sym=True, desc_act=spec["desc_act"],
                             in_features=in_features, out_features=out_features, bias=has_bias)
        float_linear = torch.nn.Linear(in_features, out_features, bias=has_bias)
        float_linear.weight.data.copy_(weight)
        if has_bias:
            float_linear.bias.data.copy_(linear.bias.data.float())
        module.pack(float_linear, scales, zeros, g_idx)
        module.post_init()
        # gptqmodel keeps zero-points as they are in memory (its v2); dequantize now, in float32, then convert to
        # the v1 serialization every published GPTQ checkpoint uses.
        dequantized = dequantize_float32(module)
        convert_gptq_v2_to_v1_format_module(module, QuantizeConfig(bits=spec["bits"], group_size=GROUP_SIZE))
        tensors = dict(qweight=module.qweight, qzeros=module.qzeros, scales=module.scales, g_idx=module.g_idx)
    else:
        g_idx = torch.arange(in_features, dtype=torch.int32) // GROUP_SIZE
        scales, zeros = round_to_nearest_params(weight, g_idx, groups, 4, sym=False)
        module = AwqTorchLinear(bits=4, group_size=GROUP_SIZE, sym=False, desc_act=False, in_features=in_features,
                                out_features=out_features, bias=has_bias)
        float_linear = torch.nn.Linear(in_features, out_features, bias=has_bias)
        float_linear.weight.data.copy_(weight)
        module.pack(float_linear, scales, zeros)
        dequantized = dequantize_awq_float32(module)
        tensors = dict(qweight=module.qweight, qzeros=module.qzeros, scales=module.scales)
    return tensors, dequantized


def dequantize_float32(module):
    """gptqmodel's own unpack (dequantize_weight) with the F16 scales widened first, so the product is exact."""
    scales = module.scales
    module.scales = scales.float()
    weight = module.dequantize_weight().float()  # [in, out]
    module.scales = scales
    return weight.t().contiguous()


def dequantize_awq_float32(module):
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
    weight = dequantize_gemm(qweight=module.qweight, qzeros=module.qzeros, scales=module.scales.float(), bits=4,
                             group_size=GROUP_SIZE)  # [in, out]
    return weight.float().t().contiguous()


class NearTie(Exception):
    pass


def greedy_run(model, ids, name, check_ties):
    """Prefill logits, NUM_GREEDY greedy tokens and the logits after each (rounded), recomputing every step."""
    prefill = logits_of(model, ids)
    sequence, greedy, steps = list(ids), [], []
    logits = prefill
    for _ in range(NUM_GREEDY):
        margin = top2_margin(logits)
        if check_ties and margin < MIN_GREEDY_MARGIN:
            raise NearTie(f"{name}: prompt of {len(ids)} tokens has a near tie ({margin})")
        token = int(torch.argmax(logits))
        greedy.append(token)
        sequence.append(token)
        logits = logits_of(model, sequence)
        steps.append(rounded(logits))
    return prefill, greedy, steps


def quantization_config(spec):
    if spec["method"] == "gptq":
        # As the published Qwen2.5-*-GPTQ-Int4 config.json (AutoGPTQ / optimum), no checkpoint_format: v1.
        return dict(quant_method="gptq", bits=spec["bits"], group_size=GROUP_SIZE, desc_act=spec["desc_act"],
                    sym=True, damp_percent=0.01, true_sequential=True, use_exllama=False)
    # As the published Qwen2.5-*-AWQ config.json.
    return dict(quant_method="awq", bits=4, group_size=GROUP_SIZE, version="gemm", zero_point=True,
                modules_to_not_convert=None)


def make(name, spec, out_root):
    # A seed whose greedy path has a near tie (top two logits within MIN_GREEDY_MARGIN) is skipped, as
    # model_make_reference_checkpoints.py refuses one; the seed used is recorded.
    for attempt in range(20):
        try:
            return make_with_seed(name, spec, out_root, spec["seed"] + 1000 * attempt)
        except NearTie as tie:
            print(f"{tie}; next seed")
    raise SystemExit(f"{name}: no seed without near ties")


def make_with_seed(name, spec, out_root, seed):
    config_cls, model_cls = spec["cls"]
    generator = torch.Generator().manual_seed(seed)
    config = config_cls(**spec["config"])
    model = model_cls(config)
    randomize(model, generator, 1.0)
    model = model.to(torch.float16)
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    state = {}
    unpacked = None
    dequantized_model = model_cls(config).to(torch.float32)
    dequantized_model.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    for key, tensor in model.state_dict().items():
        if not any(f".{linear}.weight" in key for linear in LINEARS):
            state[key] = tensor.contiguous()
    for layer in range(config.num_hidden_layers):
        for linear in LINEARS:
            prefix = f"model.layers.{layer}.{linear}"
            module = model.get_submodule(prefix)
            tensors, dequantized = quantize_linear(module, spec, generator)
            for suffix, tensor in tensors.items():
                state[f"{prefix}.{suffix}"] = tensor.contiguous()
            dequantized_model.get_submodule(prefix).weight.data.copy_(dequantized)
            if prefix == UNPACK_LAYER:
                unpacked = dequantized
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config_dict = config.to_dict()
    config_dict["architectures"] = [model_cls.__name__]
    config_dict["quantization_config"] = quantization_config(spec)
    config_dict["torch_dtype"] = "float16"
    (out / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n")

    reference = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager",
                                                     device_map="cpu").eval()
    described = type(reference.get_submodule(UNPACK_LAYER)).__name__
    dequantized_model.config._attn_implementation = "eager"
    dequantized_model.eval()
    prompts, kernel = [], []
    kernel_vs_dequantized = 0.0
    for length in PROMPT_LENGTHS:
        ids = torch.randint(3, config.vocab_size, (length,), generator=generator).tolist()
        prefill, greedy, steps = greedy_run(dequantized_model, ids, name, check_ties=True)
        prompts.append(dict(ids=ids, prefill_logits=rounded(prefill), greedy_ids=greedy, step_logits=steps))
        kernel_prefill, kernel_greedy, _ = greedy_run(reference, ids, name, check_ties=False)
        kernel.append(dict(prefill_logits=rounded(kernel_prefill), greedy_ids=kernel_greedy))
        kernel_vs_dequantized = max(kernel_vs_dequantized, float((kernel_prefill - prefill).abs().max()))
    record = dict(
        generator="tests/tools/model_make_quantized_checkpoints.py",
        transformers=transformers.__version__,
        torch=torch.__version__,
        gptqmodel=gptqmodel.__version__,
        seed=seed,
        reference=("prompts: transformers (float32, eager) on the weights gptqmodel's own unpack dequantizes; "
                   f"kernel: transformers from_pretrained of this folder, quantized layers run by {described}"),
        compute_dtype="float32",
        attention="eager",
        max_kernel_prefill_difference=kernel_vs_dequantized,
        prompts=prompts,
        kernel=kernel,
        dequantized=dict(layer=UNPACK_LAYER, shape=list(unpacked.shape),
                         weights=[float(v) for v in unpacked.flatten().tolist()]),
    )
    (out / "reference.json").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    files = sorted(p.name for p in out.iterdir())
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{name}: {size / 1e6:.2f} MB, files {files}, reference layers {described}, "
          f"max |kernel - float32 on dequantized| prefill logit {kernel_vs_dequantized:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = pathlib.Path(__file__).resolve().parents[2]
    parser.add_argument("--out", type=pathlib.Path, default=repo / "tests/data/models")
    parser.add_argument("--only", default=None, help="make only this model")
    args = parser.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        if args.only is None or args.only == name:
            make(name, spec, args.out)


if __name__ == "__main__":
    main()
