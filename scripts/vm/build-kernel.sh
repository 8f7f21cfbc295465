#!/usr/bin/env bash
# Build the test kernel once, cached under the user's cache dir, keyed by the Debian source
# version + this fragment + this script. Prints the cache directory (bzImage and usr/include inside).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE="${IOASID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ioasid}"
tree=$(bash "$here/fetch-source.sh")
ver=$(cat "$tree/.debian-version" 2>/dev/null || echo unknown)
key=$(cat "$tree/.debian-version" "$here/kernel.config" "$here/build-kernel.sh" | sha256sum | cut -c1-16)
out="$CACHE/kernel/$key"
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi
log="$out/build.log"
echo "building kernel $ver into $out (log: $log)" >&2
{
  make -C "$tree" O="$out" tinyconfig
  KCONFIG_CONFIG="$out/.config" "$tree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$here/kernel.config"
  make -C "$tree" O="$out" olddefconfig
} >"$log" 2>&1
# Every =y of the fragment must have survived olddefconfig.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=*) grep -qx "$line" "$out/.config" || { echo "config lost: $line" >&2; missing=1; } ;; esac
done < "$here/kernel.config"
[ "$missing" = 0 ] || { echo "kernel config fragment did not apply" >&2; exit 1; }
make -C "$tree" O="$out" -j"$(nproc)" bzImage >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
make -C "$tree" O="$out" headers >>"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
# The selftest header is not part of the uAPI export; keep a copy beside it.
cp "$tree/drivers/iommu/iommufd/iommufd_test.h" "$out/usr/include/iommufd_test.h"
touch "$out/.done"
echo "$out"
