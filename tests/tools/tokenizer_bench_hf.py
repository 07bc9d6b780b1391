#!/usr/bin/env python3
"""Hugging Face `tokenizers` encode throughput on tests/data/tokenizer/corpus.txt, single thread, record by
record (as bm_tokenizer_bench does). RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false keep it on one core.

Usage: .venv/bin/python tests/tools/tokenizer_bench_hf.py [--repeat N] [--shared SHARED]
"""
import argparse
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

SEPARATOR = "\n=====bmserver-tokenizer-record=====\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shared", default=os.environ.get("BMSERVER_SHARED_MODELS",
                                                           os.path.join(here, "../../../shared/models")))
    args = parser.parse_args()
    import tokenizers
    from transformers import AutoTokenizer
    with open(os.path.join(here, "../data/tokenizer/corpus.txt"), encoding="utf-8", newline="") as f:
        records = f.read().split(SEPARATOR)
    num_bytes = sum(len(r.encode("utf-8")) for r in records)
    print(f"corpus: {len(records)} records, {num_bytes / 1e6:.2f} MB (tokenizers {tokenizers.__version__})")
    toks = {
        "qwen2.5": AutoTokenizer.from_pretrained(os.path.join(args.shared, "Qwen/Qwen2.5-7B-Instruct")).backend_tokenizer,
        "r1-distill-llama": tokenizers.Tokenizer.from_file(
            os.path.join(args.shared, "tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json")),
    }
    for name, tok in toks.items():
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            for r in records:
                tok.encode(r, add_special_tokens=False)
            best = min(best, time.perf_counter() - start)
        print(f"{name:20s} encode {num_bytes / 1e6 / best:.2f} MB/s (best of {args.repeat}, one encode() per record)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
