#!/usr/bin/env python3
"""Test-time fixture for bm_tokenizer_tests: derives tokenizer folders from shared/models (read in place) into
the build folder and records what Hugging Face makes of a set of texts with each of them.

Folders written under --out (the upstream tokenizer.json files are not available, so transformers / tokenizers
write them here from the upstream vocab.json + merges.txt + tokenizer_config.json):
  qwen2.5-json      transformers' save_pretrained of Qwen/Qwen2.5-7B-Instruct
  qwq-vocab         vocab.json + merges.txt of Qwen2.5 with QwQ-32B's tokenizer_config.json (links)
  qwq-json          save_pretrained of qwq-vocab
  vl-vocab          vocab.json + merges.txt of Qwen2.5 with Qwen2.5-VL-7B-Instruct's tokenizer_config.json (links)
  vl-json           save_pretrained of vl-vocab
  r1-qwen-vocab     vocab.json + merges.txt with a tokenizer_config.json for DeepSeek-R1-Distill-Qwen built from
                    deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B/added_tokens.derived.json (add_bos_token true)
  r1-qwen-json      save_pretrained of r1-qwen-vocab, with the BOS TemplateProcessing post-processor the
                    upstream tokenizer.json has
  r1-llama-json     tokenizers' own save of the assembled R1-Distill-Llama tokenizer.json + its tokenizer_config
  flags-json        Qwen2.5 plus added tokens with lstrip / rstrip / single_word / normalized flags
expected.json: {folder: {"bos_id", "eos_id", "vocab_size", "cases": [{text, ids, ids_with_special, decode,
decode_skip}]}}, computed with the folder's Hugging Face tokenizer; the cases are the texts below plus the first
corpus records.

Usage: .venv/bin/python tests/tools/tokenizer_make_fixtures.py --out BUILD/tokenizer_fixtures --shared SHARED
"""
import argparse
import json
import os
import shutil
import sys

SEPARATOR = "\n=====bmserver-tokenizer-record=====\n"
NUM_CORPUS_RECORDS = 300

TEXTS = [
    "", " ", "Hello world", "hello  world\n\n", "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nreasoning</think>answer", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>",
    "<tool_response>ok</tool_response>", "<｜User｜>hi<｜Assistant｜><think>\n", "<｜begin▁of▁sentence｜>x",
    "<｜end▁of▁sentence｜>", "<|EOT|>", "<|endoftext|><|endoftext|>", "a<|im_end|>b", "<|im_start|",
    "I'm sure it's fine, we'LL see; they'RE here 'ſ", "1234567890 3.14159 1e10", "你好，世界！🌍",
    "e\u0301 a\u0308 \u1100\u1161\u11a8", "  leading and trailing  ", "\t\ttabs\tand\r\nCRLF\r\n",
    "x <lstrip> y", "x <rstrip>   y", "a word b", "awordb", "_word_", "wordy word", "cafe\u0301 cafe\u0301x",
    "café caféx", "<lstrip><lstrip>", "   <lstrip>", "<rstrip>\n\n", "emoji 👩‍👩‍👧‍👦 flag 🇨🇳",
    "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>describe", "<|video_pad|> <|box_start|>(1,2)<|box_end|>",
]


def link(src, dst):
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(src, dst)


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def save_transformers(src_dir, dst_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(src_dir)
    tok.save_pretrained(fresh_dir(dst_dir))
    return tok


def r1_qwen_config(shared):
    with open(os.path.join(shared, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B/added_tokens.derived.json"),
              encoding="utf-8") as f:
        table = json.load(f)["added_tokens"]
    decoder = {str(t["id"]): {"content": t["content"], "lstrip": False, "normalized": False, "rstrip": False,
                              "single_word": False, "special": t["special"]} for t in table}
    return {"add_bos_token": True, "add_eos_token": False, "bos_token": "<｜begin▁of▁sentence｜>",
            "eos_token": "<｜end▁of▁sentence｜>", "pad_token": "<｜end▁of▁sentence｜>",
            "unk_token": None, "tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": decoder,
            "model_max_length": 16384}


def ensure_bos_post_processor(json_dir, bos, bos_id):
    """Gives tokenizer.json the TemplateProcessing of the upstream R1-Distill-Qwen file if transformers did not."""
    import tokenizers
    from tokenizers import processors
    path = os.path.join(json_dir, "tokenizer.json")
    tok = tokenizers.Tokenizer.from_file(path)
    if tok.encode("x").ids[:1] == [bos_id]:
        return
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, bos_id)])
    tok.save(path)


def build(out, shared):
    import tokenizers
    from tokenizers import AddedToken
    qwen_src = os.path.join(shared, "Qwen/Qwen2.5-7B-Instruct")
    save_transformers(qwen_src, os.path.join(out, "qwen2.5-json"))

    qwq_vocab = fresh_dir(os.path.join(out, "qwq-vocab"))
    for name in ("vocab.json", "merges.txt"):
        link(os.path.join(qwen_src, name), os.path.join(qwq_vocab, name))
    for name in ("tokenizer_config.json", "added_tokens.json", "special_tokens_map.json"):
        link(os.path.join(shared, "Qwen/QwQ-32B", name), os.path.join(qwq_vocab, name))
    save_transformers(qwq_vocab, os.path.join(out, "qwq-json"))

    vl_vocab = fresh_dir(os.path.join(out, "vl-vocab"))
    for name in ("vocab.json", "merges.txt"):
        link(os.path.join(qwen_src, name), os.path.join(vl_vocab, name))
    link(os.path.join(shared, "Qwen/Qwen2.5-VL-7B-Instruct/tokenizer_config.json"),
         os.path.join(vl_vocab, "tokenizer_config.json"))
    save_transformers(vl_vocab, os.path.join(out, "vl-json"))

    r1_vocab = fresh_dir(os.path.join(out, "r1-qwen-vocab"))
    for name in ("vocab.json", "merges.txt"):
        link(os.path.join(qwen_src, name), os.path.join(r1_vocab, name))
    with open(os.path.join(r1_vocab, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(r1_qwen_config(shared), f, ensure_ascii=False, indent=2)
    save_transformers(r1_vocab, os.path.join(out, "r1-qwen-json"))
    ensure_bos_post_processor(os.path.join(out, "r1-qwen-json"), "<｜begin▁of▁sentence｜>", 151646)

    llama_dir = fresh_dir(os.path.join(out, "r1-llama-json"))
    tokenizers.Tokenizer.from_file(
        os.path.join(shared, "tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json")).save(
        os.path.join(llama_dir, "tokenizer.json"))
    link(os.path.join(shared, "deepseek-ai/DeepSeek-R1-Distill-Llama-8B/tokenizer_config.json"),
         os.path.join(llama_dir, "tokenizer_config.json"))

    flags_dir = fresh_dir(os.path.join(out, "flags-json"))
    flags = tokenizers.Tokenizer.from_file(os.path.join(out, "qwen2.5-json/tokenizer.json"))
    flags.add_special_tokens([AddedToken("<lstrip>", lstrip=True, special=True, normalized=False),
                              AddedToken("<rstrip>", rstrip=True, special=True, normalized=False)])
    flags.add_tokens([AddedToken("word", single_word=True, normalized=False),
                      AddedToken("cafe\u0301", normalized=True)])
    flags.save(os.path.join(flags_dir, "tokenizer.json"))


def expectations(out, corpus_path):
    import tokenizers
    with open(corpus_path, encoding="utf-8", newline="") as f:
        records = f.read().split(SEPARATOR)[:NUM_CORPUS_RECORDS]
    result = {}
    for folder in ("qwen2.5-json", "qwq-json", "vl-json", "r1-qwen-json", "r1-llama-json", "flags-json"):
        tok = tokenizers.Tokenizer.from_file(os.path.join(out, folder, "tokenizer.json"))
        cases = []
        for text in TEXTS + records:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"text": text, "ids": ids, "ids_with_special": tok.encode(text).ids,
                          "decode": tok.decode(ids, skip_special_tokens=False),
                          "decode_skip": tok.decode(ids, skip_special_tokens=True)})
        result[folder] = {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases}
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--shared", default=os.environ.get("BMSERVER_SHARED_MODELS",
                                                           os.path.join(here, "../../../shared/models")))
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.shared, "Qwen/Qwen2.5-7B-Instruct")):
        print(f"shared model files absent under {args.shared}; nothing to derive (the tests skip)")
        shutil.rmtree(args.out, ignore_errors=True)
        return 0
    os.makedirs(args.out, exist_ok=True)
    # Written last, so a half-built folder is never taken for a finished one.
    done = os.path.join(args.out, "expected.json")
    if os.path.exists(done):
        os.remove(done)
    build(args.out, args.shared)
    expectations(args.out, os.path.join(here, "../data/tokenizer/corpus.txt"))
    print(f"wrote tokenizer fixtures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
