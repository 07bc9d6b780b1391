#!/usr/bin/env python3
"""Regenerates the committed tokenizer expectations in tests/data/tokenizer/ with Hugging Face `tokenizers`.

For every record of corpus.txt (see tokenizer_gen_corpus.py) and every tokenizer below it writes one line
    <number of ids> <fnv1a64 of the ids> <fnv1a64 of decode(ids)> <fnv1a64 of decode(ids, skip_special)>
to expected_<name>.txt (hashes as 16 hex digits; ids hashed as little-endian int32 bytes, text as UTF-8 bytes),
and the full ids of the first FULL_RECORDS records to expected_<name>_ids.txt (one line per record), so that a
mismatch can be diagnosed. encode uses add_special_tokens=False (the post-processor is tested separately).

The tokenizers are built from the files in shared/models (read in place):
  qwen2.5          transformers' Qwen2 tokenizer from Qwen/Qwen2.5-7B-Instruct (vocab.json, merges.txt,
                   tokenizer_config.json)
  r1-distill-llama tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json

Usage: .venv/bin/python tests/tools/tokenizer_gen_expectations.py [--shared /work/shared/models]
"""
import argparse
import os
import sys

SEPARATOR = "\n=====bmserver-tokenizer-record=====\n"
FULL_RECORDS = 120


def fnv1a64(data: bytes) -> int:
    h = 1469598103934665603
    for b in data:
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def ids_bytes(ids):
    return b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids)


def load_tokenizers(shared):
    import tokenizers
    from transformers import AutoTokenizer
    qwen = AutoTokenizer.from_pretrained(os.path.join(shared, "Qwen/Qwen2.5-7B-Instruct")).backend_tokenizer
    llama = tokenizers.Tokenizer.from_file(
        os.path.join(shared, "tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json"))
    return {"qwen2.5": qwen, "r1-distill-llama": llama}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.environ.get("BMSERVER_SHARED_MODELS",
                                                           os.path.join(here, "../../../shared/models")))
    parser.add_argument("--data", default=os.path.join(here, "../data/tokenizer"))
    args = parser.parse_args()
    with open(os.path.join(args.data, "corpus.txt"), encoding="utf-8", newline="") as f:
        records = f.read().split(SEPARATOR)
    for name, tok in load_tokenizers(args.shared).items():
        lines, full = [], []
        for i, rec in enumerate(records):
            ids = tok.encode(rec, add_special_tokens=False).ids
            text = tok.decode(ids, skip_special_tokens=False)
            skipped = tok.decode(ids, skip_special_tokens=True)
            lines.append(f"{len(ids)} {fnv1a64(ids_bytes(ids)):016x} {fnv1a64(text.encode('utf-8')):016x} "
                         f"{fnv1a64(skipped.encode('utf-8')):016x}")
            if i < FULL_RECORDS:
                full.append(" ".join(str(x) for x in ids))
        with open(os.path.join(args.data, f"expected_{name}.txt"), "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(args.data, f"expected_{name}_ids.txt"), "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join(full) + "\n")
        print(f"{name}: {len(records)} records, {sum(int(l.split()[0]) for l in lines)} ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
