#!/usr/bin/env bash
# Install the npm dependencies when they are missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/vitest ] || [ ! -x node_modules/.bin/tsc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
# Debian's headless chromium for the browser test of the compare report (test/compare.test.ts);
# without root and apt that test skips (outside CI) and says why.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-deps: installing chromium" >&2
    apt-get -q update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2 \
      || echo "ensure-deps: could not install chromium (the browser test will say so)" >&2
  else
    echo "ensure-deps: no chromium (needs root and apt-get to install): the browser test will skip" >&2
  fi
fi
