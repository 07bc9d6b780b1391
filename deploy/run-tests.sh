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

# The same unit tests and the serving end-to-end tests again under AddressSanitizer + UndefinedBehaviorSanitizer
# (a Debug build; any report fails the run). Left out here, because they run in the release pass above and add
# nothing a sanitizer would see that the serving tests do not: the download, store, system, state, benchmark and
# package e2e files (network fakes, CLI plumbing, dpkg), the XGrammar oracle (the same grammar code as
# test_structured_output, ten times slower under ASan) and the memory-bound test (RSS under ASan is not the
# product's).
bash deploy/build.sh asan
BMSERVER_SANITIZED=1 ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  ctest --test-dir build/asan --output-on-failure -j2 --timeout 1800 \
  -E '^e2e\.test_(benchmark|download|store|system|state|quantized_serving|package|xgrammar_oracle)$'

if [ -f tests/fuzz/run-fuzzers.sh ]; then
  bash tests/fuzz/run-fuzzers.sh 30
fi
echo "run-tests: finished in $(( $(date +%s) - start )) s"
