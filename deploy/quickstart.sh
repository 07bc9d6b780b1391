#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: install the packages, build, install bmserverd/bmserver, start the
# daemon (systemd service when systemd runs, else a user-mode daemon in the background), show `bmserver env`, then
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
bash deploy/build.sh release
$SUDO cmake --install build/release --prefix /usr/local >/dev/null
echo "quickstart: installed $(command -v bmserverd) and $(command -v bmserver)"

if [ -d /run/systemd/system ]; then
  id bmserver >/dev/null 2>&1 || $SUDO useradd --system --home-dir /var/lib/bmserver --shell /usr/sbin/nologin bmserver
  $SUDO install -d -m 0755 /etc/bmserver
  [ -f /etc/bmserver/bmserverd.toml ] || $SUDO install -m 0644 deploy/bmserverd.toml /etc/bmserver/bmserverd.toml
  $SUDO install -m 0644 deploy/bmserverd.service /etc/systemd/system/bmserverd.service
  $SUDO systemctl daemon-reload
  $SUDO systemctl enable --now bmserverd
  [ "$(id -u)" -eq 0 ] || $SUDO usermod -aG bmserver "$USER"
  export BMSERVER_DAEMON=unix:/run/bmserver/bmserverd.sock
  BM="$SUDO bmserver"
else
  # No systemd (a container): a user-mode daemon with its socket and state under this user's directories.
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/bmserver-run-$(id -u)}"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 0700 "$XDG_RUNTIME_DIR"
  LOG="$XDG_RUNTIME_DIR/bmserverd.log"
  if ! bmserver --daemon "unix:$XDG_RUNTIME_DIR/bmserver/bmserverd.sock" --version 2>/dev/null | grep -q "^bmserverd [0-9]"; then
    nohup bmserverd >"$LOG" 2>&1 &
  fi
  export BMSERVER_DAEMON="unix:$XDG_RUNTIME_DIR/bmserver/bmserverd.sock"
  BM="bmserver"
  echo "quickstart: no systemd here; started bmserverd in user mode (log: $LOG)"
  echo "quickstart: use it from other shells with: export BMSERVER_DAEMON=$BMSERVER_DAEMON"
fi
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
