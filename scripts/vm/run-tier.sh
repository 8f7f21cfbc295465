#!/usr/bin/env bash
# The real-kernel tier: run every vitest suite inside the test VM against the linux backend.
# Prints "vm: N passed, N failed, N skipped"; exit 0 pass, 1 fail, 3 skipped (cannot provision).
# Writes the counts as "passed failed skipped" to $IOASID_TIER_COUNTS when set.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
bash "$here/provision.sh"
prc=$?
if [ $prc -ne 0 ]; then
  echo "vm: SKIPPED (cannot provision qemu and kernel build dependencies: not root or no apt)"
  exit 3
fi
res=$(mktemp -d "${TMPDIR:-/tmp}/ioasid-tier.XXXXXX")
kdir=$(bash "$here/build-kernel.sh") || { echo "vm: FAILED (kernel build)"; exit 1; }
IOASID_BACKEND=linux bash "$here/run-in-guest.sh" --results "$res" -- \
  node_modules/.bin/vitest run --configLoader native \
  --reporter=default --reporter=json --outputFile=/run/results/vitest.json
rc=$?
if [ ! -f "$res/vitest.json" ]; then
  echo "vm: FAILED (the guest produced no test report; exit $rc; logs in $res)"
  [ -n "${IOASID_TIER_COUNTS:-}" ] && echo "0 1 0" > "$IOASID_TIER_COUNTS"
  exit 1
fi
read -r p f s < <(node -e 'const r=require(process.argv[1]);console.log(r.numPassedTests,r.numFailedTests,r.numPendingTests+r.numTodoTests)' "$res/vitest.json")
echo "vm: $p passed, $f failed, $s skipped"
[ -n "${IOASID_TIER_COUNTS:-}" ] && echo "$p $f $s" > "$IOASID_TIER_COUNTS"
[ -n "${IOASID_REPORTS:-}" ] && mkdir -p "$IOASID_REPORTS" && cp "$res/vitest.json" "$IOASID_REPORTS/vm.json"
if [ "$rc" = 0 ] && [ "$f" = 0 ]; then
  rm -rf "$res"   # keep the console log and report only when something failed
  exit 0
fi
echo "vm: guest logs kept in $res"
exit 1
