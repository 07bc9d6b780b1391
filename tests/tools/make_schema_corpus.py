#!/usr/bin/env python3
"""Generates the random part of the structured-output schema corpus (tests/data/structured_output/schemas/g*.json).

Random nested objects and arrays drawn from the keywords the grammar engine supports (types, required/optional,
enums, const, anyOf, nullable, bounds, lengths, formats, patterns, prefixItems, $defs/$ref), seeded so the files
are reproducible; the hand-written h*.json files cover every keyword on purpose. Strings carry a maxLength (or a
format/pattern/enum) so that a random-weight model, whose choices inside a free string rarely close it, finishes
within the test's token budget.

usage: make_schema_corpus.py OUT_DIR [--count 70] [--seed 18]
"""
import argparse
import json
import os
import random

FORMATS = ["date", "time", "date-time", "uuid", "email", "ipv4"]
PATTERNS = ["^[a-z]{2,5}$", "^[A-Z][0-9]{2}$", "^(on|off)$", "^[0-9a-f]{4}-[0-9a-f]{2}$", "^x+y?$"]
WORDS = ["alpha", "beta", "gamma", "delta", "north", "south", "red", "blue", "cat", "dog", "ok", "fail"]


def scalar(rng):
    kind = rng.choice(["string", "string", "integer", "number", "boolean", "null", "enum", "const", "format",
                       "pattern"])
    if kind == "string":
        s = {"type": "string", "maxLength": rng.randint(1, 12)}
        if rng.random() < 0.4:
            s["minLength"] = rng.randint(0, s["maxLength"])
        return s
    if kind == "integer":
        s = {"type": "integer"}
        if rng.random() < 0.7:
            lo = rng.randint(-1000, 1000)
            s["minimum"] = lo
            s["maximum"] = lo + rng.randint(0, 5000)
        if rng.random() < 0.2:
            s["exclusiveMaximum"] = s.pop("maximum", 10**6) + 1
        return s
    if kind == "number":
        s = {"type": "number"}
        if rng.random() < 0.6:
            s["minimum"] = rng.randint(-100, 0)
            s["maximum"] = rng.randint(1, 100)
        return s
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "null":
        return {"type": "null"}
    if kind == "enum":
        return {"enum": rng.sample(WORDS, rng.randint(1, 6))}
    if kind == "const":
        return {"const": rng.choice([rng.choice(WORDS), rng.randint(0, 99), True])}
    if kind == "format":
        return {"type": "string", "format": rng.choice(FORMATS)}
    return {"type": "string", "pattern": rng.choice(PATTERNS)}


def schema(rng, depth, defs):
    r = rng.random()
    if depth >= 3 or r < 0.45:
        s = scalar(rng)
    elif r < 0.75:
        props = {}
        for i in range(rng.randint(1, 5)):
            props[f"{rng.choice(WORDS)}_{i}"] = schema(rng, depth + 1, defs)
        names = list(props)
        s = {"type": "object", "properties": props, "required": rng.sample(names, rng.randint(0, len(names)))}
        if rng.random() < 0.2:
            s["additionalProperties"] = False
    elif r < 0.87:
        s = {"type": "array", "items": schema(rng, depth + 1, defs), "maxItems": rng.randint(1, 4)}
        if rng.random() < 0.5:
            s["minItems"] = rng.randint(0, s["maxItems"])
        if rng.random() < 0.25:
            s["prefixItems"] = [scalar(rng) for _ in range(rng.randint(1, 2))]
            s["maxItems"] = max(s["maxItems"], len(s["prefixItems"]))
    elif r < 0.95:
        s = {"anyOf": [schema(rng, depth + 1, defs) for _ in range(rng.randint(2, 3))]}
    else:
        name = f"Def{len(defs)}"
        defs[name] = schema(rng, depth + 1, defs)
        s = {"$ref": f"#/$defs/{name}"}
    if rng.random() < 0.1 and "type" in s and s["type"] != "null":
        s["nullable"] = True
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=70)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.count):
        defs = {}
        props = {f"f{j}": schema(rng, 1, defs) for j in range(rng.randint(1, 6))}
        root = {"type": "object", "properties": props, "required": list(props)}
        if defs:
            root["$defs"] = defs
        with open(os.path.join(args.out, f"g{i + 1:02d}.json"), "w") as f:
            json.dump(root, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
