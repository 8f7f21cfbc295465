#!/usr/bin/env bash
# Install what the real-kernel tier needs (QEMU, kernel build deps). Idempotent and quiet when
# everything is present. Exit 3 with a reason when it cannot (not root, no apt).
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
for p in flex bison bc libelf-dev libssl-dev dwarves cpio gcc make; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "cannot install ${need[*]}: needs root and apt-get" >&2
  exit 3
fi
echo "provision: installing ${need[*]}" >&2
apt-get -q update >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
