#!/usr/bin/env python3
"""Writes tests/data/tokenizer/corpus.txt: about 2.2 MB of synthetic mixed text for the tokenizer tests.

Deterministic (fixed seed, no external data): English-like prose from a word list written here, Chinese from
common characters and random CJK code points, code in several languages from templates written here, emoji
(with ZWJ, skin tones, flags, variation selectors), rare scripts sampled from Unicode blocks, combining marks
and decomposed text (NFC matters), whitespace runs, digits, and added-token strings inside text.

Records are separated by SEPARATOR; each record is tokenized as a whole.
Usage: python3 tests/tools/tokenizer_gen_corpus.py [output path]
"""
import os
import random
import sys

SEPARATOR = "\n=====bmserver-tokenizer-record=====\n"
SEED = 20251125
TARGET_BYTES = 2_400_000

WORDS = """the of and to in is was for on that with as by at from it this be are or an have not which
one all were they we you there their has more can if will would about when what so no out up into some
time them other than then only its also these two may like first any new because very after over such
through where much before between each well those should people world state system data model token
server stream request response queue cache memory thread kernel layer weight matrix vector batch engine
river mountain garden window paper summer winter coffee music school doctor market city village friend
quick brown fox jumps lazy dog quantum neural silver golden ancient modern simple complex random steady
running jumped thinking wouldn couldn shouldn isn aren wasn don doesn didn won hasn haven hadn ain
Alice Bob Carol Dave Eve Mallory London Paris Tokyo Berlin Qwen Llama DeepSeek GPU CPU HTTP JSON API
naïve café résumé façade coöperate jalapeño Zürich São Paulo Kraków Ærøskøbing""".split()

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D",
                "'ſ", "'x", "'", "''", "’s", "'re'", "'lL"]

PUNCT = list(".,;:!?-—–()[]{}<>\"'`~@#$%^&*_+=|\\/…«»“”‘’・。，、！？：；（）【】《》")

CHINESE_WORDS = """我们 今天 天气 很好 中国 北京 上海 学习 工作 模型 推理 服务器 数据 语言 大家 你好 谢谢 时间
问题 因为 所以 但是 可以 没有 知道 什么 这个 那个 一个 自己 已经 开始 现在 世界 朋友 电脑 手机 程序 代码
人工智能 机器学习 深度学习 自然语言处理 分词器 字节 编码 解码 流式 输出""".split()

CJK_PUNCT = "，。！？；：、「」『』（）《》〈〉【】…—"

KEYWORDS = ["alpha", "beta", "gamma", "delta", "count", "total", "index", "value", "result", "buffer",
            "tokens", "items", "config", "handler", "request", "reply", "cursor", "offset", "limit", "size",
            "userName", "maxLen", "HTTPServer", "parse_json", "to_string", "__init__", "_private", "x1", "y2"]

# (start, end) code point ranges of scripts and symbol blocks to sample.
SCRIPT_RANGES = [
    (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF),
    (0x0700, 0x074F), (0x0780, 0x07BF), (0x0900, 0x097F), (0x0980, 0x09FF), (0x0A00, 0x0A7F),
    (0x0B80, 0x0BFF), (0x0C00, 0x0C7F), (0x0D00, 0x0D7F), (0x0E00, 0x0E7F), (0x0E80, 0x0EFF),
    (0x0F00, 0x0FFF), (0x1000, 0x109F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1200, 0x137F),
    (0x13A0, 0x13FF), (0x1780, 0x17FF), (0x1800, 0x18AF), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF),
    (0x2000, 0x206F), (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x214F), (0x2150, 0x218F),
    (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2460, 0x24FF), (0x2500, 0x257F), (0x2600, 0x26FF),
    (0x2700, 0x27BF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x3130, 0x318F), (0x3400, 0x4DBF),
    (0xA000, 0xA48F), (0xA980, 0xA9DF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFB00, 0xFB4F),
    (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x10000, 0x1007F), (0x10330, 0x1034F), (0x10400, 0x1044F),
    (0x11000, 0x1107F), (0x12000, 0x123FF), (0x13000, 0x1342F), (0x16A40, 0x16A6F), (0x1D400, 0x1D7FF),
    (0x1F100, 0x1F1FF), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF),
    (0xE000, 0xE0FF), (0xFFF0, 0xFFFD), (0x0080, 0x00FF), (0x0000, 0x001F),
]

COMBINING = [0x0300, 0x0301, 0x0302, 0x0303, 0x0308, 0x030A, 0x030C, 0x0323, 0x0327, 0x0328, 0x0331,
             0x0345, 0x05B0, 0x064B, 0x0651, 0x093C, 0x094D, 0x0E48, 0x1DC0, 0x20D7, 0x302A, 0x3099, 0x309A]

EMOJI = ["😀", "😂", "🥲", "😍", "🤔", "🙈", "🚀", "🔥", "💡", "🎉", "✅", "❌", "⭐", "☕", "🐍", "🦀",
         "👍🏽", "👋🏿", "🧑‍💻", "👩‍👩‍👧‍👦", "😶‍🌫️", "❤️", "❤️‍🔥", "🏳️‍🌈", "🇨🇳", "🇺🇸", "🇩🇪", "🇯🇵", "1️⃣",
         "#️⃣", "©️", "™", "🫠", "🫶🏻", "🧠", "🤖", "📈", "⚠️", "✍🏼", "🏴‍☠️"]

SPECIAL_STRINGS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>", "</tool_call>",
                   "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|repo_name|>", "<|file_sep|>",
                   "<|vision_start|>", "<|image_pad|>", "<think>", "</think>", "<tool_response>",
                   "<｜User｜>", "<｜Assistant｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                   "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|reserved_special_token_7|>",
                   "<|im_sta", "im_end|>", "<|<|im_end|>|>", "<<|endoftext|>>", "< |im_start| >", "<|IM_END|>"]

WHITESPACE = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\u00a0",
              "\u3000", "\u2028", "\u2009", "\u200b", "\x0b", "\x0c", "\u0085", " \t \n", "\n\n\n   "]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def word(self):
        w = self.pick(WORDS)
        roll = self.r.random()
        if roll < 0.08:
            return w.capitalize()
        if roll < 0.11:
            return w.upper()
        if roll < 0.16:
            return w + self.pick(CONTRACTIONS)
        return w

    def sentence(self):
        n = self.r.randint(3, 18)
        words = [self.word() for _ in range(n)]
        if self.r.random() < 0.3:
            words.insert(self.r.randrange(len(words)), self.number())
        if self.r.random() < 0.2:
            words.insert(self.r.randrange(len(words)), "(" + self.word() + ")")
        text = " ".join(words)
        text = text[0].upper() + text[1:]
        return text + self.pick([".", ".", ".", "!", "?", "...", ";", ":", "?!", "."])

    def prose(self):
        parts = []
        for _ in range(self.r.randint(2, 10)):
            parts.append(self.sentence())
            parts.append(self.pick([" ", " ", " ", "  ", "\n", "\n\n", " — ", "\n- "]))
        return "".join(parts)

    def number(self):
        kind = self.r.randrange(10)
        if kind == 0:
            return str(self.r.randrange(10 ** self.r.randint(1, 25)))
        if kind == 1:
            return f"{self.r.uniform(-1e6, 1e6):.{self.r.randint(0, 8)}f}"
        if kind == 2:
            return f"{self.r.randrange(1000):03d}-{self.r.randrange(10000):04d}"
        if kind == 3:
            return f"{self.r.randrange(1, 13)}/{self.r.randrange(1, 29)}/{self.r.randrange(1900, 2100)}"
        if kind == 4:
            return "".join(chr(0x0660 + self.r.randrange(10)) for _ in range(self.r.randint(1, 7)))
        if kind == 5:
            return "".join(chr(0xFF10 + self.r.randrange(10)) for _ in range(self.r.randint(1, 7)))
        if kind == 6:
            return self.pick(["²", "³", "½", "¾", "Ⅻ", "ⅷ", "①", "⑳", "𝟙𝟚", "٣", "४२", "໓", "〇"])
        if kind == 7:
            return f"{self.r.randrange(256)}.{self.r.randrange(256)}.{self.r.randrange(256)}.{self.r.randrange(256)}"
        if kind == 8:
            return f"0x{self.r.randrange(1 << 32):08X}"
        return f"{self.r.randrange(100)}%"

    def digits(self):
        out = []
        for _ in range(self.r.randint(5, 40)):
            out.append(self.number())
            out.append(self.pick([" ", "", ",", ", ", "\n", "  ", "-", "+", " = ", "\t"]))
        return "".join(out)

    def chinese(self):
        out = []
        for _ in range(self.r.randint(10, 120)):
            roll = self.r.random()
            if roll < 0.55:
                out.append(self.pick(CHINESE_WORDS))
            elif roll < 0.8:
                out.append(chr(self.r.randint(0x4E00, 0x9FFF)))
            elif roll < 0.92:
                out.append(self.pick(CJK_PUNCT))
            elif roll < 0.96:
                out.append(self.word() if self.r.random() < 0.5 else " " + self.word() + " ")
            else:
                out.append(self.number())
        return "".join(out)

    def identifier(self):
        return self.pick(KEYWORDS) + (str(self.r.randrange(10)) if self.r.random() < 0.2 else "")

    def code(self):
        ind = self.pick(["    ", "  ", "\t", "        "])
        a, b, c = self.identifier(), self.identifier(), self.identifier()
        n = self.r.randrange(1000)
        templates = [
            f"def {a}({b}, {c}=None):\n{ind}\"\"\"Return the {self.word()} of {b}.\"\"\"\n{ind}if {c} is None:\n"
            f"{ind}{ind}{c} = []\n{ind}for i in range({n}):\n{ind}{ind}{c}.append({b}[i] ** 2)  # {self.word()}\n"
            f"{ind}return {c}\n",
            f"#include <vector>\n\nint {a}(const std::vector<int>& {b}) {{\n{ind}int {c} = {n};\n"
            f"{ind}for (size_t i = 0; i < {b}.size(); ++i) {{\n{ind}{ind}{c} += {b}[i] << 2;\n{ind}}}\n"
            f"{ind}return {c};  // {self.word()}\n}}\n",
            f"function {a}({b}) {{\n{ind}const {c} = {b}.map((x) => x * {n});\n{ind}console.log(`{self.word()}: ${{{c}}}`);\n"
            f"{ind}return {c}.filter(Boolean);\n}}\n",
            f"fn {a}({b}: &[u32]) -> Option<u64> {{\n{ind}let {c}: u64 = {b}.iter().map(|&x| x as u64).sum();\n"
            f"{ind}if {c} > {n} {{ Some({c}) }} else {{ None }}\n}}\n",
            f"func {a}({b} []string) (int, error) {{\n{ind}{c} := 0\n{ind}for _, s := range {b} {{\n"
            f"{ind}{ind}{c} += len(s)\n{ind}}}\n{ind}return {c}, nil\n}}\n",
            f"SELECT {a}, COUNT(*) AS {b}\nFROM {c}\nWHERE {a} >= {n} AND {b} <> '{self.word()}'\n"
            f"GROUP BY {a}\nORDER BY {b} DESC;\n",
            f"<div class=\"{a}\">\n{ind}<p id='{b}'>{self.sentence()}</p>\n{ind}<a href=\"/{c}?q={n}&x=1\">{self.word()}</a>\n</div>\n",
            f"{{\n{ind}\"{a}\": {n},\n{ind}\"{b}\": [\"{self.word()}\", null, true, {self.r.random():.3f}],\n"
            f"{ind}\"{c}\": {{\"nested\": \"{self.word()}\\n\\t\"}}\n}}\n",
            f"#!/bin/sh\nset -eu\nfor f in \"$@\"; do\n{ind}grep -n '{a}' \"$f\" | awk -F: '{{print $1}}' > /tmp/{b}.txt\ndone\n",
            f"class {a.capitalize()}:\n{ind}def __init__(self):\n{ind}{ind}self.{b} = {{'{c}': {n}}}\n"
            f"{ind}{ind}self._{c} = lambda x: x != {n}  # != == <= >= -> => :: ...\n",
            f"    if (x->{a} && !{b}) {{ return -{n}; }} /* {self.word()} */\n"
            f"    else if ({c} || x[{n}] != '\\0') {{ goto {a}_end; }}\n",
        ]
        return self.pick(templates)

    def script_text(self):
        lo, hi = self.pick(SCRIPT_RANGES)
        out = []
        for _ in range(self.r.randint(5, 60)):
            out.append(chr(self.r.randint(lo, hi)))
            roll = self.r.random()
            if roll < 0.15:
                out.append(" ")
            elif roll < 0.2:
                out.append(chr(self.pick(COMBINING)))
        return "".join(out)

    def decomposed(self):
        out = []
        for _ in range(self.r.randint(5, 40)):
            base = self.pick("aeiouAEIOUnNcCsSzZyYgGkKhHwW") if self.r.random() < 0.8 else chr(self.r.randint(0xAC00, 0xD7A3))
            out.append(base)
            for _ in range(self.r.randint(0, 3)):
                out.append(chr(self.pick(COMBINING)))
            if self.r.random() < 0.1:  # conjoining jamo that NFC composes into syllables
                out.append(chr(0x1100 + self.r.randrange(19)) + chr(0x1161 + self.r.randrange(21)) +
                           (chr(0x11A8 + self.r.randrange(27)) if self.r.random() < 0.5 else ""))
            if self.r.random() < 0.3:
                out.append(self.pick([" ", "", "-", "\n"]))
        return "".join(out)

    def emoji(self):
        out = []
        for _ in range(self.r.randint(3, 30)):
            out.append(self.pick(EMOJI))
            if self.r.random() < 0.4:
                out.append(self.pick([" ", "", self.word(), " " + self.word() + " ", "!", "\n"]))
        return "".join(out)

    def whitespace(self):
        out = []
        for _ in range(self.r.randint(5, 40)):
            out.append(self.pick(WHITESPACE) * self.r.randint(1, 4))
            if self.r.random() < 0.6:
                out.append(self.pick([self.word(), self.number(), self.pick(PUNCT), "x", "中文", "🙂"]))
        return "".join(out)

    def specials(self):
        out = []
        for _ in range(self.r.randint(3, 20)):
            out.append(self.pick(SPECIAL_STRINGS))
            out.append(self.pick(["", " ", "\n", self.word(), " " + self.word(), "user\n", "assistant\n",
                                  self.sentence(), "  ", "\t"]))
        return "".join(out)

    def contractions(self):
        out = []
        for _ in range(self.r.randint(5, 30)):
            out.append(self.pick(WORDS) + self.pick(CONTRACTIONS) + self.pick(["", " ", "s", "a", "1", "\n", "'"]))
        return " ".join(out)

    def random_unicode(self):
        out = []
        for _ in range(self.r.randint(5, 50)):
            plane = self.r.random()
            if plane < 0.7:
                cp = self.r.randint(0, 0xFFFF)
            elif plane < 0.95:
                cp = self.r.randint(0x10000, 0x2FFFF)
            else:
                cp = self.r.randint(0x30000, 0x10FFFF)
            if 0xD800 <= cp <= 0xDFFF:
                continue
            out.append(chr(cp))
        return "".join(out)

    def punctuation(self):
        return "".join(self.pick(PUNCT) + (self.pick([" ", "", "\n", "a", "1"]) if self.r.random() < 0.3 else "")
                       for _ in range(self.r.randint(5, 60)))

    def mixed(self):
        gens = [self.prose, self.chinese, self.code, self.script_text, self.emoji, self.whitespace, self.specials,
                self.digits, self.decomposed, self.contractions, self.punctuation]
        return self.pick([" ", "\n", ""]).join(self.pick(gens)() for _ in range(self.r.randint(2, 6)))

    def record(self):
        weighted = [(self.prose, 16), (self.chinese, 10), (self.code, 14), (self.script_text, 8), (self.emoji, 5),
                    (self.whitespace, 6), (self.specials, 5), (self.digits, 6), (self.decomposed, 5),
                    (self.contractions, 4), (self.random_unicode, 4), (self.punctuation, 3), (self.mixed, 14)]
        total = sum(w for _, w in weighted)
        roll = self.r.randrange(total)
        for gen, w in weighted:
            if roll < w:
                return gen()
            roll -= w
        raise AssertionError


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "data", "tokenizer", "corpus.txt")
    gen = Gen(SEED)
    records = []
    size = 0
    while size < TARGET_BYTES:
        rec = gen.record()
        if not rec or SEPARATOR in rec:
            continue
        records.append(rec)
        size += len(rec.encode("utf-8")) + len(SEPARATOR)
    with open(out_path, "w", encoding="utf-8", newline="") as f:
        f.write(SEPARATOR.join(records))
    print(f"wrote {out_path}: {len(records)} records, {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main()
