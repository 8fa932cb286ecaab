#!/usr/bin/env bash
# Start, stop or restart the benchmark's own redis-server on a loopback port (never a system
# service). Usage: redis.sh start|stop|restart PORT DIR   (pid file: DIR/redis.pid)
set -euo pipefail
cmd=${1:?start|stop|restart}; port=${2:?port}; dir=${3:?dir}
mkdir -p "$dir"

start() {
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
  for _ in $(seq 1 50); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "redis on port $port did not start" >&2
  return 1
}

stop() {
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then rm -f "$dir/redis.pid"; return 0; fi
    sleep 0.1
  done
  if [[ -f "$dir/redis.pid" ]]; then kill -9 "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
  rm -f "$dir/redis.pid"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
