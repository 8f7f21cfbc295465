#!/usr/bin/env bash
# Run a command inside the test VM (the host's filesystem read-only at the same paths) and exit
# with its status. Usage: run-in-guest.sh [--results DIR] -- command args...
# Env: IOASID_VM_TIMEOUT (seconds, default 1800), IOASID_VM_MEM (default 2G).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
res=""
if [ "${1:-}" = "--results" ]; then res=$2; shift 2; fi
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: run-in-guest.sh [--results DIR] -- command..." >&2; exit 2; }

bash "$here/provision.sh" >&2
kdir=$(bash "$here/build-kernel.sh")
res=${res:-$(mktemp -d "${TMPDIR:-/tmp}/ioasid-vm.XXXXXX")}
mkdir -p "$res"
rm -f "$res/rc" "$res/out.log" "$res/guest.log"

cwd=$(pwd)
case "$cwd" in /tmp/*) cwd="/run/hosttmp/${cwd#/tmp/}" ;; esac
{
  echo "cd '$cwd' || exit 97"
  # The guest's HOME is a tmpfs: point it at the host's cache (read-only there) explicitly.
  echo "export IOASID_IN_GUEST=1 IOASID_VITEST_CACHE=/tmp/vite NO_COLOR=1 CI='${CI:-}'"
  echo "export IOASID_CACHE='${IOASID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ioasid}'"
  for v in IOASID_BACKEND IOASID_BENCH_N IOASID_WRITE_DIFFERENCES IOASID_WRITE_VERDICTS; do
    [ -n "${!v:-}" ] && echo "export $v='${!v}'"
  done
  printf '%q ' "$@"; echo
} > "$res/cmd.sh"

timeout --foreground "${IOASID_VM_TIMEOUT:-1800}" qemu-system-x86_64 \
  -nodefaults -display none -monitor none -serial stdio -no-reboot \
  -machine q35,kernel-irqchip=split -accel tcg,thread=multi -cpu max -smp 2 -m "${IOASID_VM_MEM:-2G}" \
  -device intel-iommu,intremap=on,caching-mode=on -device edu,addr=01.0 \
  -device pcie-pci-bridge,id=br0,bus=pcie.0,addr=02.0 \
  -device edu,bus=br0,addr=01.0 -device edu,bus=br0,addr=02.0 \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$res,mount_tag=results,security_model=none,multidevs=remap" \
  -kernel "$kdir/arch/x86/boot/bzImage" \
  -append "console=ttyS0 quiet panic=-1 intel_iommu=on root=hostroot rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro init=$here/guest-init.sh" \
  < /dev/null > "$res/console.log" 2>&1 || true

cat "$res/out.log" 2>/dev/null || true
if [ ! -f "$res/rc" ]; then
  echo "vm: the guest never reported (see $res/console.log)" >&2
  tail -20 "$res/console.log" >&2 || true
  exit 98
fi
exit "$(cat "$res/rc")"
