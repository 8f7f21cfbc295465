#!/usr/bin/env bash
# Install the npm dependencies (with scripts/ts-tools/, a file: dependency) when they are missing or
# older than package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/vitest ] || [ ! -x node_modules/.bin/tsc ] || [ ! -d scripts/ts-tools/node_modules/typedoc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
