#!/usr/bin/env bash
# `npm run bench`: sim figures on the host, then one guest run (C loop vs linux backend vs sim on
# the same kernel) with the ratios. Not a test: it asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
node --expose-gc dist/bench/run.js host
if [ "${IOASID_SKIP_VM:-}" = 1 ]; then echo "guest: skipped (IOASID_SKIP_VM=1)"; exit 0; fi
res=$(mktemp -d "${TMPDIR:-/tmp}/ioasid-bench.XXXXXX")
out=$(IOASID_BENCH_N="${IOASID_BENCH_N:-100000}" bash scripts/vm/run-in-guest.sh --results "$res" -- \
  node dist/bench/guest.js)
rm -rf "$res"
json=$(printf '%s\n' "$out" | grep '^{' | tail -n1)
node -e '
const r = JSON.parse(process.argv[1]);
const f = (x) => x.toFixed(0).padStart(7) + " ns";
console.log(`guest (TCG)  map+unmap 4 KiB, auto IOVA, N=${r.n}, per pair:`);
console.log(`             C loop          ${f(r.c.ns_per_pair)}   (map ${r.c.ns_map.toFixed(0)} / unmap ${r.c.ns_unmap.toFixed(0)})`);
console.log(`             linux backend   ${f(r.linux)}   ${(r.linux / r.c.ns_per_pair).toFixed(3)}x the C loop`);
console.log(`             sim             ${f(r.sim)}   ${(r.sim / r.c.ns_per_pair).toFixed(3)}x the C loop`);
const rows = (title, s) => {
  console.log(`             ${title}:`);
  console.log(`             C loop          ${f(s.c.ns_per_pair)}   (map ${s.c.ns_map.toFixed(0)} / unmap ${s.c.ns_unmap.toFixed(0)})   ${(s.c.ns_per_pair / r.c.ns_per_pair).toFixed(2)}x the bare C loop`);
  console.log(`             linux backend   ${f(s.linux)}   ${(s.linux / s.c.ns_per_pair).toFixed(3)}x the C loop`);
  if (s.sim !== undefined) console.log(`             sim             ${f(s.sim)}   ${(s.sim / s.c.ns_per_pair).toFixed(3)}x the C loop`);
};
if (r.mock) rows("with the selftest mock domain attached (IOMMU_TEST_CMD MOCK_DOMAIN)", r.mock);
if (r.edu) rows(`with edu attached through ${r.edu.cdev} (emulated VT-d)`, r.edu);
' "$json"
