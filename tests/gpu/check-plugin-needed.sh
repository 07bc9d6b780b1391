#!/usr/bin/env bash
# Asserts the CUDA plugin's dynamic dependencies: it must not need libnccl (opened at run time for its version
# only, so a missing or broken NCCL cannot stop the plugin from loading), and every library it does need must be
# found by the loader here (`ldd`: none "not found"). Usage: check-plugin-needed.sh <libbm_backend_cuda.so>
set -euo pipefail

plugin="${1:?usage: check-plugin-needed.sh <libbm_backend_cuda.so>}"
needed=$(readelf -d "$plugin" | awk '/\(NEEDED\)/ {gsub(/[][]/, "", $5); print $5}')
echo "NEEDED by $plugin:"
while read -r lib; do echo "  $lib"; done <<<"$needed"
status=0
if grep -qi '^libnccl' <<<"$needed"; then
  echo "FAIL: the plugin links libnccl; it must dlopen it (plugin_probe.cpp)" >&2
  status=1
fi
missing=$(ldd "$plugin" | grep 'not found' || true)
if [[ -n "$missing" ]]; then
  echo "FAIL: libraries the plugin needs are missing here:" >&2
  echo "$missing" >&2
  status=1
fi
exit "$status"
