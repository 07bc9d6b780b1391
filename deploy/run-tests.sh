#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: packages, the Python reference tools (venv), build, ctest,
# and a short fuzzing run. Exits non-zero on any failure. `.ci/run` runs exactly this.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)

bash deploy/install-deps.sh

# The reference tools (tokenizers, transformers, jinja2, huggingface_hub, openai, ...) live in a venv; CI needs
# no PyTorch (expected outputs of the torch-based generators are committed).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import sys" 2>/dev/null; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
# XGrammar, the structured-output oracle, declares torch and triton but runs without them (tests/e2e/xgrammar_oracle.py).
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r tests/requirements-nodeps.txt

bash deploy/build.sh ci
ctest --preset ci --output-on-failure -j2

if [ -f tests/fuzz/run-fuzzers.sh ]; then
  bash tests/fuzz/run-fuzzers.sh 30
fi
echo "run-tests: finished in $(( $(date +%s) - start )) s"
