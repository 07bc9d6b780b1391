#!/usr/bin/env python3
"""Writes engine/tokenizer/unicode_tables.inc from Python's unicodedata.

The tokenizer needs, per code point: the regex classes of the pre-tokenizer split patterns (\\p{L}, \\p{N}, \\s),
and the data for NFC (canonical combining class, canonical decomposition, primary composition). Hugging Face
`tokenizers` matches its patterns with Oniguruma 6.9.8, whose tables are Unicode 14.0 — the version of
unicodedata in Python 3.11 — so the script insists on that version to keep the output reproducible.

Its NFC (the unicode-normalization-alignments crate) has older data: about a hundred combining marks and one
decomposition that Unicode added later are unknown to it (it treats them as unassigned starters). To be exact
against it, the NFC data is unicodedata's minus what Hugging Face's own NFC/NFD normalizers disagree with, which
is why the script needs the `tokenizers` package (run it with the venv's python).

Usage: .venv/bin/python tests/tools/tokenizer_gen_unicode_tables.py [output path]
"""
import os
import sys
import unicodedata

EXPECTED_UNICODE = "14.0.0"
MAX_CP = 0x110000
BLOCK = 256

FLAG_LETTER = 1
FLAG_NUMBER = 2
FLAG_SPACE = 4
FLAG_NFC_SENSITIVE = 8

# PropList.txt White_Space: what Oniguruma (and Rust's char::is_whitespace) call a space. Python's
# str.isspace differs (it also accepts U+001C..U+001F), so the list is spelled out.
WHITE_SPACE = [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
               0x205F, 0x3000]

HANGUL_S_BASE, HANGUL_L_BASE, HANGUL_V_BASE, HANGUL_T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
HANGUL_L_COUNT, HANGUL_V_COUNT, HANGUL_T_COUNT = 19, 21, 28
HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_V_COUNT * HANGUL_T_COUNT


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def canonical_decomposition(cp):
    """Single-level canonical decomposition, or None (Hangul syllables are handled in C++)."""
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomposition(cp):
    parts = canonical_decomposition(cp)
    if parts is None:
        return [cp]
    out = []
    for p in parts:
        out.extend(full_decomposition(p))
    return out


def main():
    if unicodedata.unidata_version != EXPECTED_UNICODE:
        sys.exit(f"need unicodedata {EXPECTED_UNICODE} (Python 3.11), have {unicodedata.unidata_version}")
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "engine", "tokenizer", "unicode_tables.inc")

    try:
        from tokenizers import normalizers
    except ImportError:
        sys.exit("needs the `tokenizers` package (run with .venv/bin/python)")
    hf_nfc, hf_nfd = normalizers.NFC(), normalizers.NFD()
    base = "\u4e00"  # a starter that composes with nothing

    def hf_knows_class(cp, c):
        # Canonical ordering moves a mark of class c across one of class 1 (U+0334) or 230 (U+0301) only if
        # the normalizer knows c.
        s = base + chr(cp) + "\u0334" if c > 1 else base + "\u0301" + chr(cp)
        return hf_nfc.normalize_str(s) == unicodedata.normalize("NFC", s)

    ccc = {}
    decompositions = {}
    compositions = {}
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        c = unicodedata.combining(chr(cp))
        if c and hf_knows_class(cp, c):
            ccc[cp] = c
        if 0xAC00 <= cp < 0xAC00 + HANGUL_S_COUNT:
            continue
        if canonical_decomposition(cp) is not None:
            full = full_decomposition(cp)
            if hf_nfd.normalize_str(chr(cp)) != "".join(chr(x) for x in full):
                continue
            decompositions[cp] = full
            single = canonical_decomposition(cp)
            # A primary composite: a pair decomposition that NFC puts back together (not excluded).
            pair = chr(single[0]) + chr(single[1]) if len(single) == 2 else ""
            if pair and unicodedata.normalize("NFC", pair) == chr(cp) and hf_nfc.normalize_str(pair) == chr(cp):
                compositions[(single[0], single[1])] = cp

    second_of_pair = {b for (_, b) in compositions}
    flags = bytearray(MAX_CP)
    for cp in range(MAX_CP):
        if is_surrogate(cp):
            continue
        ch = chr(cp)
        cat = unicodedata.category(ch)
        f = 0
        if cat[0] == "L":
            f |= FLAG_LETTER
        if cat[0] == "N":
            f |= FLAG_NUMBER
        if cp in ccc or cp in second_of_pair or (cp in decompositions and unicodedata.normalize("NFC", ch) != ch):
            f |= FLAG_NFC_SENSITIVE
        flags[cp] = f
    for cp in WHITE_SPACE:
        flags[cp] |= FLAG_SPACE
    # Hangul V and T jamo compose with a preceding L / LV syllable.
    for cp in list(range(HANGUL_V_BASE, HANGUL_V_BASE + HANGUL_V_COUNT)) + \
            list(range(HANGUL_T_BASE + 1, HANGUL_T_BASE + HANGUL_T_COUNT)):
        flags[cp] |= FLAG_NFC_SENSITIVE

    # Two-stage table: stage1[cp / 256] picks a 256-entry block of stage2.
    blocks = {}
    stage1 = []
    stage2 = bytearray()
    for start in range(0, MAX_CP, BLOCK):
        block = bytes(flags[start:start + BLOCK])
        if block not in blocks:
            blocks[block] = len(blocks)
            stage2 += block
        stage1.append(blocks[block])

    lines = []
    w = lines.append
    w("// Generated by tests/tools/tokenizer_gen_unicode_tables.py from Python's unicodedata "
      f"{unicodedata.unidata_version}")
    w("// (NFC data restricted to what Hugging Face tokenizers' NFC knows). Do not edit.")
    w("// Included by engine/tokenizer/unicode_tables.cpp only.")
    w("")
    w(f"constexpr int kFlagBlockSize = {BLOCK};")
    w(f"constexpr uint16_t kFlagStage1[{len(stage1)}] = {{")
    for i in range(0, len(stage1), 24):
        w("  " + ",".join(str(x) for x in stage1[i:i + 24]) + ",")
    w("};")
    w(f"constexpr uint8_t kFlagStage2[{len(stage2)}] = {{")
    for i in range(0, len(stage2), 48):
        w("  " + ",".join(str(x) for x in stage2[i:i + 48]) + ",")
    w("};")
    w("")
    w(f"constexpr CombiningClass kCombiningClasses[{len(ccc)}] = {{")
    items = sorted(ccc.items())
    for i in range(0, len(items), 8):
        w("  " + " ".join(f"{{0x{cp:X},{c}}}," for cp, c in items[i:i + 8]))
    w("};")
    w("")
    # Decompositions: an index (code point, offset, length) into one flat array.
    flat = []
    index = []
    for cp in sorted(decompositions):
        seq = decompositions[cp]
        index.append((cp, len(flat), len(seq)))
        flat.extend(seq)
    w(f"constexpr char32_t kDecompositionData[{len(flat)}] = {{")
    for i in range(0, len(flat), 12):
        w("  " + ",".join(f"0x{x:X}" for x in flat[i:i + 12]) + ",")
    w("};")
    w(f"constexpr Decomposition kDecompositions[{len(index)}] = {{")
    for i in range(0, len(index), 6):
        w("  " + " ".join(f"{{0x{cp:X},{off},{n}}}," for cp, off, n in index[i:i + 6]))
    w("};")
    w("")
    w(f"constexpr Composition kCompositions[{len(compositions)}] = {{")
    comp = sorted(compositions.items())
    for i in range(0, len(comp), 5):
        w("  " + " ".join(f"{{0x{a:X},0x{b:X},0x{c:X}}}," for (a, b), c in comp[i:i + 5]))
    w("};")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out_path}: {len(blocks)} flag blocks, {len(ccc)} combining classes, "
          f"{len(decompositions)} decompositions, {len(compositions)} compositions")


if __name__ == "__main__":
    main()
