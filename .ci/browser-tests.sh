#!/usr/bin/env bash
# The dashboard in a real headless browser (Debian's Chromium driven by playwright-core) and
# `gantry watch` once in tmux, both against the real `gantry serve` with simulated GPUs. Installs what
# is missing (apt: chromium, tmux, curl; npm: tests/browser/node_modules from its lock file), builds
# target/debug/gantry if needed. Screenshots: target/browser-screenshots/ (or $SCREENSHOT_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "browser-tests: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "browser-tests: playwright-core needs Node 20 or newer, found $(node --version)" >&2
  exit 1
fi

# Up to date after `cargo test --workspace`: then this only checks.
cargo build -q -p gantry

if [[ ! -d tests/browser/node_modules/playwright-core ]] \
  || [[ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

export SCREENSHOT_DIR=${SCREENSHOT_DIR:-$PWD/target/browser-screenshots}
rm -rf "$SCREENSHOT_DIR"
mkdir -p "$SCREENSHOT_DIR"
export CHROMIUM=${CHROMIUM:-$(command -v chromium)}

start=$(date +%s)
timeout 240 node tests/browser/dashboard.test.mjs
timeout 90 bash tests/browser/tui-tmux.sh
echo "browser-tests: passed in $(( $(date +%s) - start )) s; screenshots in $SCREENSHOT_DIR"
