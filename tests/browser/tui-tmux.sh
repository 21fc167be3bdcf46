#!/usr/bin/env bash
# `gantry watch` once in a real terminal: tmux at 80x24 against the real server (simulated GPUs,
# temporary database, loopback, no auth). Asserts the GPUs, the queue and the running work appear
# and fit, that `q` quits with status 0, and keeps the screen under $SCREENSHOT_DIR/watch-80x24.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${GANTRY_BIN:-$ROOT/target/debug/gantry}
OUT=${SCREENSHOT_DIR:-$ROOT/target/browser-screenshots}
mkdir -p "$OUT"

dir=$(mktemp -d /tmp/gantry-tmux-XXXXXX)
chmod 755 "$dir"
sock="gantry-test-$$"
server_pid=""
url=""

cleanup() {
  if [[ -n "$url" ]]; then
    for id in $(curl -s "$url/api/workloads?limit=1000" | grep -o '"id":"wl-[0-9]*"' | cut -d'"' -f4); do
      curl -s -o /dev/null -X POST "$url/api/workloads/$id/cancel" || true
    done
  fi
  tmux -L "$sock" kill-server 2>/dev/null || true
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

fail() {
  echo "tui-tmux: FAILED: $*" >&2
  [[ -f "$dir/screen.txt" ]] && { echo "--- screen ---" >&2; cat "$dir/screen.txt" >&2; }
  [[ -f "$dir/server.log" ]] && { echo "--- server log ---" >&2; tail -n 40 "$dir/server.log" >&2; }
  exit 1
}

port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
url="http://127.0.0.1:$port"
GANTRY_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --db "$dir/g.db" --log-dir "$dir/logs" \
  --simulate-gpus 4xH100-80GB --grace 1 --no-auth >"$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || fail "gantry serve exited"
  sleep 0.1
done
curl -sf "$url/readyz" >/dev/null || fail "gantry serve not ready"

submit() {
  curl -sf -X POST -H 'Content-Type: application/json' -d "$1" "$url/api/workloads" >/dev/null || fail "submit $1"
}
submit '{"name":"tmux-holds","resources":{"gpu":{"count":3}},"run":{"command":["sleep","120"]}}'
for _ in $(seq 1 100); do
  curl -s "$url/api/workloads/wl-1/status" | grep -q '"state":"running"' && break
  sleep 0.1
done
submit '{"name":"tmux-waits","resources":{"gpu":{"count":2}},"run":{"command":["true"]}}'

tmux -L "$sock" -f /dev/null new-session -d -s watch -x 80 -y 24 \
  "GANTRY_SERVER=$url '$BIN' watch; echo \$? > '$dir/watch.exit'"

seen=""
for _ in $(seq 1 100); do
  tmux -L "$sock" capture-pane -p -t watch >"$dir/screen.txt" 2>/dev/null || true
  if grep -q 'GPUs (4)' "$dir/screen.txt" && grep -q 'Queue (1)' "$dir/screen.txt" \
    && grep -q 'Running (1)' "$dir/screen.txt" && grep -q 'tmux-waits' "$dir/screen.txt" \
    && grep -q 'tmux-holds' "$dir/screen.txt" && grep -q 'wl-1' "$dir/screen.txt"; then
    seen=yes
    break
  fi
  sleep 0.1
done
cp "$dir/screen.txt" "$OUT/watch-80x24.txt"
[[ -n "$seen" ]] || fail "the GPUs, queue and running work did not appear"
# Four GPU rows with a utilisation figure, and nothing wider than the terminal.
[[ $(grep -cE 'H100-80GB.* +[0-9]+% ' "$dir/screen.txt") -eq 4 ]] || fail "expected 4 GPU rows"
[[ $(wc -l <"$dir/screen.txt") -le 24 ]] || fail "more than 24 lines"
node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").split("\n");process.exit(l.every((x)=>[...x].length<=80)?0:1)' \
  "$dir/screen.txt" || fail "a line wider than 80 columns"

tmux -L "$sock" send-keys -t watch q
for _ in $(seq 1 50); do
  [[ -f "$dir/watch.exit" ]] && break
  sleep 0.1
done
[[ -f "$dir/watch.exit" ]] || fail "q did not quit gantry watch"
[[ $(cat "$dir/watch.exit") == 0 ]] || fail "gantry watch exited with $(cat "$dir/watch.exit")"
sleep 0.2
if tmux -L "$sock" has-session -t watch 2>/dev/null; then fail "the tmux session is still there"; fi
echo "ok: gantry watch in tmux 80x24 showed GPUs, queue and running work; q quit with status 0"
