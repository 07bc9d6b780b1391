#!/usr/bin/env bash
# Installs the Debian 12 packages BMServer builds and tests with (DESIGN §10). Idempotent.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git python3 python3-venv openssl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libboost-dev
  libpqxx-dev libspdlog-dev libcli11-dev nlohmann-json3-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev postgresql curl libsystemd-dev lintian
  clang libclang-rt-14-dev
  libpng-dev libjpeg62-turbo-dev libwebp-dev libgif-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi
