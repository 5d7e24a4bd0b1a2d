#!/usr/bin/env bash
# run.sh -- the dashboard's browser test (issue 20).  Usage: run.sh BUILD_DIR
# Starts a private redis-server, a worker and `gtask dashboard` on free
# loopback ports in a temp dir, runs a known workload, installs puppeteer-core
# into BUILD_DIR/browser-test (npm ci from the committed lockfile; it uses
# Debian's /usr/bin/chromium, downloads no browser), runs dashboard_test.js,
# and stops everything.  Screenshots: BUILD_DIR/browser-test/screenshots/.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
gtask=$build/gtask
work=$(mktemp -d /tmp/gtask-browser.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for tool in redis-server redis-cli node npm; do
  command -v $tool >/dev/null || { echo "run.sh: $tool is missing (scripts/deps installs it)"; exit 1; }
done
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || { echo "run.sh: no chromium (scripts/deps installs it)"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# up WHAT CMD...: runs CMD every 0.1 s until it succeeds, for up to 60 s (a
# loaded machine starts servers slowly); then fails saying what is not up.
up() {
  local what=$1; shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "run.sh: $what is not up after 60 s"; exit 1
}

# puppeteer-core, at the locked version, into the build folder.
dest=$build/browser-test
mkdir -p "$dest/screenshots"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
if [[ ! -d $dest/node_modules/puppeteer-core ]] || ! cmp -s "$here/package-lock.json" "$dest/node_modules/.package-lock.json.src" 2>/dev/null; then
  npm ci --prefix "$dest" --no-audit --no-fund --loglevel=error
  cp "$here/package-lock.json" "$dest/node_modules/.package-lock.json.src"
fi

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
pids+=($!)
up redis-server redis-cli -p "$rport" ping
export GTASK_REDIS_URL=redis://127.0.0.1:$rport/0

"$gtask" worker --builtin --concurrency 4 >"$work/worker.log" 2>&1 &
wpid=$!
pids+=($wpid)
dport=$(free_port)
"$gtask" dashboard --listen 127.0.0.1:$dport --queues xss >"$work/dashboard.log" 2>&1 &
pids+=($!)
up "the dashboard" curl -sf "http://127.0.0.1:$dport/api/session"

# The workload: successes and a failure on default (served), a task with a
# <script> argument waiting in xss (not served), and a dead task in xss.
for i in 1 2 3 4 5; do "$gtask" send add $i 1 --wait 60s >/dev/null; done
failed_id=$("$gtask" send fail nope)
"$gtask" result "$failed_id" --wait 60s >/dev/null 2>&1 || true
xss_id=$("$gtask" --queue xss send echo '<script>window.__xss=1;alert(1)</script>')
dead_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
redis-cli -p "$rport" HSET 'gtask:{xss}:dead' "$dead_id" \
  "{\"v\":2,\"n\":\"echo\",\"a\":[[\"string\",\"from the dead\"]],\"c\":$(date +%s%3N),\"e\":\"lost 5 times\"}" >/dev/null

status=0
GTASK=$gtask URL=http://127.0.0.1:$dport REDIS_URL=$GTASK_REDIS_URL WORKER_PID=$wpid XSS_ID=$xss_id FAILED_ID=$failed_id \
  SHOTS=$dest/screenshots NODE_PATH=$dest/node_modules node "$here/dashboard_test.js" || status=$?
if ((status != 0)); then
  for log in worker dashboard; do echo "--- $log.log (last lines)"; tail -n 20 "$work/$log.log"; done
fi
exit $status
