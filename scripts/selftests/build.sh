#!/usr/bin/env bash
# Build the kernel's own iommufd selftests (tools/testing/selftests/iommu: iommufd, iommufd_fail_nth)
# and the VFIO selftests (tools/testing/selftests/vfio) from the cached linux-source-7.3, unmodified,
# against that source's own uAPI headers (make headers into <dir>/usr/include; no kernel build).
# Cached under $IOASID_CACHE/selftests/<key>, keyed by the Debian source version + this script, the
# way scripts/vm/build-kernel.sh caches the kernel. Prints the cache directory: the binaries are
# <dir>/iommufd, <dir>/iommufd_fail_nth and <dir>/vfio/<test> (vfio/ is absent when that build
# failed; the reason is in <dir>/vfio.log). A second run prints the directory at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm="$here/../vm"
CACHE="${IOASID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ioasid}"
tree=$(bash "$vm/fetch-source.sh")
key=$(cat "$tree/.debian-version" "$here/build.sh" | sha256sum | cut -c1-16)
out="$CACHE/selftests/$key"
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [ -f "$out/.done" ]; then echo "$out"; exit 0; fi

# iommufd links -lcap (libcap-dev); libvfio links -luuid (uuid-dev). Installed like provision.sh does.
need=()
for p in gcc make libc6-dev libcap-dev uuid-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "selftests: cannot install ${need[*]}: needs root and apt-get" >&2
    exit 3
  fi
  echo "selftests: installing ${need[*]}" >&2
  apt-get -q update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

log="$out/build.log"
echo "building selftests of $(cat "$tree/.debian-version") into $out (log: $log)" >&2
# The source tree is shared and read as-is: every product goes under $out (O=, OUTPUT=).
# `make headers` is headers_install without its rsync step; it leaves the tree in <O>/usr/include.
rm -rf "$out/kbuild" "$out/usr"
make -C "$tree" O="$out/kbuild" headers >"$log" 2>&1 || { tail -30 "$log" >&2; exit 1; }
mv "$out/kbuild/usr" "$out/usr"
khdr="-isystem $out/usr/include"
make -C "$tree/tools/testing/selftests/iommu" OUTPUT="$out" KHDR_INCLUDES="$khdr" -j"$(nproc)" >>"$log" 2>&1 \
  || { tail -30 "$log" >&2; exit 1; }
for b in iommufd iommufd_fail_nth; do [ -x "$out/$b" ] || { echo "selftests: $b was not built" >&2; exit 1; }; done
# The VFIO selftests are optional: a failure is recorded, not fatal.
mkdir -p "$out/vfio.build"
if make -C "$tree/tools/testing/selftests/vfio" OUTPUT="$out/vfio.build" KHDR_INCLUDES="$khdr" -j"$(nproc)" \
  >"$out/vfio.log" 2>&1; then
  mkdir -p "$out/vfio"
  find "$out/vfio.build" -maxdepth 1 -type f -name 'vfio_*_test' -perm -u+x -exec mv {} "$out/vfio/" \;
else
  echo "selftests: the vfio selftests did not build (see $out/vfio.log)" >&2
fi
rm -rf "$out/kbuild" "$out/vfio.build" "$out"/*.o "$out"/*.d
touch "$out/.done"
echo "$out"
