#!/usr/bin/env bash
# The README's test command (`npm test`): provisions what it needs and runs every tier:
#   1. typecheck, 2. sim tier (vitest on the embedded sim), 3. real-kernel tier (the same suites
#   inside a QEMU VM against the linux backend). Ends with one line "N passed, N failed, N skipped".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export NO_COLOR=1

bash scripts/ensure-deps.sh || exit 1
bash scripts/ensure-browser.sh
node_modules/.bin/tsc -p tsconfig.json --noEmit || { echo "typecheck failed"; echo "0 passed, 1 failed"; exit 1; }

# The layout test compiles against the real kernel headers: fetch the source first (cached).
bash scripts/vm/fetch-source.sh >/dev/null || echo "warning: could not fetch linux-source-7.3 (the layout test will say why)"
# The kernel's own selftest binaries and uAPI headers (cached), for the bridge test on both tiers:
# the guest sees the host's cache read-only, so they are built here, before either tier.
bash scripts/selftests/build.sh >/dev/null || echo "warning: could not build the kernel's selftests (test/bridge.test.ts will skip and say why)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ioasid-test.XXXXXX")
total_p=0; total_f=0; total_s=0; status=0

node_modules/.bin/vitest run --configLoader native --reporter=default --reporter=json --outputFile="$tmp/sim.json"
rc=$?
if [ -f "$tmp/sim.json" ]; then
  read -r p f s < <(node -e 'const r=require(process.argv[1]);console.log(r.numPassedTests,r.numFailedTests,r.numPendingTests+r.numTodoTests)' "$tmp/sim.json")
else
  p=0; f=1; s=0
fi
echo "sim: $p passed, $f failed, $s skipped"
[ -n "${IOASID_REPORTS:-}" ] && [ -f "$tmp/sim.json" ] && mkdir -p "$IOASID_REPORTS" && cp "$tmp/sim.json" "$IOASID_REPORTS/sim.json"
total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
[ $rc -eq 0 ] || status=1

if [ "${IOASID_SKIP_VM:-}" = 1 ] && [ -z "${CI:-}" ]; then
  echo "vm: SKIPPED (IOASID_SKIP_VM=1)"
else
  IOASID_TIER_COUNTS="$tmp/vm.counts" bash scripts/vm/run-tier.sh
  rc=$?
  if [ $rc -eq 3 ]; then
    [ -n "${CI:-}" ] && status=1   # CI must always run the real-kernel tier
  else
    [ $rc -eq 0 ] || status=1
    if [ -f "$tmp/vm.counts" ]; then
      read -r p f s < "$tmp/vm.counts"
      total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
    else
      total_f=$((total_f + 1))
    fi
  fi
fi
[ $status -ne 0 ] && [ $total_f -eq 0 ] && total_f=1
rm -rf "$tmp"
echo "$total_p passed, $total_f failed, $total_s skipped"
exit $status
