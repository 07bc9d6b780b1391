#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: install the packages, build, package and install the .deb, start the
# daemon (the systemd service when systemd runs, else the same daemon started by hand), show `bmserver env`, then
# serve a model (the GPU when there is one, else the CPU backend) and ask it one chat completion with curl.
#
# The model: BMSERVER_QUICKSTART_MODEL, a catalog name (downloaded first; default qwen2.5-0.5b-origin, the smallest)
# or the path of a Hugging Face model folder already on disk (no network needed). BMSERVER_QUICKSTART_MODEL=none
# stops after starting the daemon.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
cd "$ROOT"

bash deploy/install-deps.sh
# Build everything (the CUDA plugin too when nvcc is there), package it as a .deb and install that: the
# binaries under /usr/bin, the plugin under /usr/lib/bmserver, the unit, /etc/bmserver/bmserverd.toml and the
# bmserver user and group (deploy/debian/). With systemd running, the package enables and starts the service.
bash deploy/build.sh release
DEB="$(bash deploy/package.sh "$ROOT/build/release")"
$SUDO apt-get install -y -qq --reinstall "$DEB" >/dev/null
echo "quickstart: installed $DEB ($(command -v bmserverd), $(command -v bmserver))"
export BMSERVER_DAEMON=unix:/run/bmserver/bmserverd.sock
if [ -d /run/systemd/system ]; then
  $SUDO systemctl start bmserverd  # returns once bmserverd says READY=1 (Type=notify)
  [ "$(id -u)" -eq 0 ] || $SUDO usermod -aG bmserver "$USER"
else
  # No systemd (a container): start it as the unit would, as the bmserver user with its runtime dir.
  $SUDO install -d -o bmserver -g bmserver -m 0750 /run/bmserver
  if ! $SUDO bmserver --version 2>/dev/null | grep -q "^bmserverd [0-9]"; then
    $SUDO runuser -u bmserver -- env HF_HOME=/var/lib/bmserver/huggingface MODELSCOPE_CACHE=/var/lib/bmserver/modelscope \
      nohup /usr/bin/bmserverd --config /etc/bmserver/bmserverd.toml >>/tmp/bmserverd.log 2>&1 &
  fi
  echo "quickstart: no systemd here; started bmserverd as the bmserver user (log: /tmp/bmserverd.log)"
fi
BM="$SUDO bmserver"
for _ in $(seq 1 50); do
  $BM --version 2>/dev/null | grep -q "^bmserverd [0-9]" && break
  sleep 0.2
done
$BM env

MODEL="${BMSERVER_QUICKSTART_MODEL:-qwen2.5-0.5b-origin}"
[ "$MODEL" = "none" ] && exit 0
if [ ! -d "$MODEL" ]; then
  if ! $BM chat download "$MODEL"; then
    echo "quickstart: could not download $MODEL (no network?). Serve a model folder already on disk instead:" >&2
    echo "  BMSERVER_QUICKSTART_MODEL=/path/to/Qwen2.5-0.5B-Instruct bash deploy/quickstart.sh" >&2
    echo "  (or: bmserver chat serve NAME --local-dir DIR, with the model in DIR/{org}/{name})" >&2
    exit 1
  fi
fi
$BM chat stop "$(basename "$MODEL")" >/dev/null 2>&1 || true
$BM chat serve "$MODEL"
$BM chat ps
read -r SERVED URL < <($BM chat ps -o json | python3 -c '
import json, sys
m = json.load(sys.stdin)["models"][0]
print(m["name"], m["http_url"])')
echo "quickstart: curl $URL/v1/chat/completions"
curl -sS --fail-with-body "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d "{
  \"model\": \"$SERVED\", \"max_tokens\": 64,
  \"messages\": [{\"role\": \"user\", \"content\": \"Say hello in one short sentence.\"}]}"
echo
