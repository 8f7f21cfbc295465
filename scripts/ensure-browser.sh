#!/usr/bin/env bash
# The test command's browser, not needed by the library or the demo: Debian's headless chromium for the
# browser test of the compare report (test/compare.test.ts); without root and apt that test skips
# (outside CI) and says why.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-browser: installing chromium" >&2
    apt-get -q update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2 \
      || echo "ensure-browser: could not install chromium (the browser test will say so)" >&2
  else
    echo "ensure-browser: no chromium (needs root and apt-get to install): the browser test will skip" >&2
  fi
fi
