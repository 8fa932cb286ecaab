#!/usr/bin/env bash
# One command for the whole benchmark: raftcast (3 nodes, Raft) vs Node Socket.IO 4 +
# @socket.io/redis-adapter + Redis (3 processes, one Redis) vs a raw tokio-tungstenite
# broadcast server (the ceiling), every scenario, systems alternated A/B each round, medians,
# ratios, plots and RESULTS.md. See bench/README.md.
#
#   bench/run.sh                 full run (3 rounds; tens of minutes), writes bench/RESULTS.md
#   bench/run.sh --smoke         every scenario in seconds with a few connections (CI)
#
# Options: --rounds N, --systems raftcast,baseline,raw, --scenarios idle,fanout,burst,crossnode,failover,seed,
#          --debug (use debug builds), --no-build, --out DIR (where RESULTS.md and plots/ go).
# Environment: CARGO_TARGET_DIR (default <repo>/target), RAFTCAST_ARGS (extra raftcast flags),
#          BENCH_THREADS (load generator worker threads, default 1), BENCH_ARGS (extra
#          `raftcast-bench scenario` flags, e.g. `--fan-batch 10`), BENCH_NICE (the systems'
#          nice value, default 10; 0 runs them at the load generator's priority).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET

MODE=full
ROUNDS=
SYSTEMS=raftcast,baseline,raw
SCENARIOS=idle,fanout,burst,crossnode,failover,seed
BUILD_PROFILE=release
BUILD=1
OUT=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --rounds) ROUNDS=$2; shift ;;
    --systems) SYSTEMS=$2; shift ;;
    --scenarios) SCENARIOS=$2; shift ;;
    --debug) BUILD_PROFILE=debug ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
ROUNDS=${ROUNDS:-$([[ $MODE == smoke ]] && echo 1 || echo 3)}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$BENCH_DIR/results/$STAMP-$MODE
JSON_DIR=$RUN_DIR/json
LOG_DIR=$RUN_DIR/logs
DATA_DIR=$(mktemp -d /tmp/raftcast-bench.XXXXXX)
OUT=${OUT:-$([[ $MODE == smoke ]] && echo "$RUN_DIR" || echo "$BENCH_DIR")}
mkdir -p "$JSON_DIR" "$LOG_DIR" "$OUT"

API_KEY=bench-key
CLUSTER_SECRET=bench-cluster-secret
RAFTCAST_NODES=127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003
RAFTCAST_PEERS=1=127.0.0.1:6001,2=127.0.0.1:6002,3=127.0.0.1:6003
BASELINE_NODES=127.0.0.1:5011,127.0.0.1:5012,127.0.0.1:5013
RAW_NODES=127.0.0.1:5021
REDIS_PORT=6390
# Socket.IO's defaults, set explicitly on all three systems.
PING_INTERVAL_MS=25000
PING_TIMEOUT_MS=20000

log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

has() { [[ ",$1," == *",$2,"* ]]; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- prerequisites
if [[ $BUILD == 1 ]]; then
  flag=$([[ $BUILD_PROFILE == release ]] && echo --release || true)
  log "building raftcast-bench ($BUILD_PROFILE)"
  (cd "$ROOT" && cargo build $flag -p raftcast-bench)
  if has "$SYSTEMS" raftcast; then
    log "building raftcast ($BUILD_PROFILE)"
    if ! (cd "$ROOT" && cargo build $flag -p raftcast --bin raftcast); then
      log "raftcast does not build: leaving it out of this run"
      SYSTEMS=$(echo ",$SYSTEMS," | sed 's/,raftcast,/,/; s/^,//; s/,$//')
    fi
  fi
fi
BIN=$TARGET/$BUILD_PROFILE
LOADGEN=$BIN/raftcast-bench
for b in "$LOADGEN" "$BIN/raw_ceiling"; do
  [[ -x $b ]] || { echo "missing $b (build first)" >&2; exit 1; }
done
if has "$SYSTEMS" raftcast && [[ ! -x $BIN/raftcast ]]; then
  log "no $BIN/raftcast: leaving raftcast out"
  SYSTEMS=$(echo ",$SYSTEMS," | sed 's/,raftcast,/,/; s/^,//; s/,$//')
fi
if has "$SYSTEMS" baseline; then
  command -v node >/dev/null || { echo "node is required for the baseline" >&2; exit 1; }
  if [[ ! -d $BENCH_DIR/baseline/node_modules/socket.io ]]; then
    log "npm ci (baseline)"
    (cd "$BENCH_DIR/baseline" && npm ci --no-audit --no-fund)
  fi
  if ! command -v redis-server >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      log "installing redis-server"
      apt-get install -y redis-server >/dev/null || { apt-get update && apt-get install -y redis-server >/dev/null; }
    else
      echo "redis-server is required for the baseline (apt-get install redis-server)" >&2; exit 1
    fi
  fi
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[[ -n $SYSTEMS ]] || { echo "no system left to benchmark" >&2; exit 1; }
# The systems under test run at a lower CPU priority than the load generator (nice 10): on a
# machine they share, the load generator stands in for clients on other machines. At equal
# priority the kernel shares the cores per thread, so the load generator's one thread got a
# share that shrank with the number of busy server threads (about 1 in 7 beside three raftcast
# nodes, 1 in 5 beside Node + Redis, 1 in 3 beside the raw server), and M2 measured how far
# behind the load generator fell, not the servers (docs/performance.md, session 16).
SUT_NICE=${BENCH_NICE:-10}
log "mode $MODE, rounds $ROUNDS, systems $SYSTEMS, scenarios $SCENARIOS, fd limit $(ulimit -n), systems at nice $SUT_NICE"
log "results in $RUN_DIR"

# ---------------------------------------------------------------- systems
PIDS=()          # server pids of the running system, in node order
PID_FILES=()     # extra pid files (Redis)
NODES=
READY_PATH=/healthz

stop_system() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ ${#PID_FILES[@]} -gt 0 ]]; then
    "$BENCH_DIR/scripts/redis.sh" stop "$REDIS_PORT" "$DATA_DIR/redis" || true
  fi
  PIDS=(); PID_FILES=()
}
trap 'stop_system; rm -rf "$DATA_DIR"' EXIT
trap 'exit 130' INT TERM

check_ports() {
  local p
  for p in "$@"; do
    if port_busy "$p"; then echo "port $p is in use: stop whatever listens there" >&2; return 1; fi
  done
}

start_raftcast() {
  check_ports 5001 5002 5003 6001 6002 6003
  rm -rf "$DATA_DIR/raftcast"; mkdir -p "$DATA_DIR/raftcast"
  local i
  for i in 1 2 3; do
    # shellcheck disable=SC2086
    nice -n "$SUT_NICE" "$BIN/raftcast" --node-id "$i" --port "500$i" --peer-port "600$i" --peers "$RAFTCAST_PEERS" \
      --cluster-secret "$CLUSTER_SECRET" --api-key "$API_KEY" --host 127.0.0.1 \
      --ping-interval-ms $PING_INTERVAL_MS --ping-timeout-ms $PING_TIMEOUT_MS \
      --data-dir "$DATA_DIR/raftcast/n$i" ${RAFTCAST_ARGS:-} >>"$LOG_DIR/raftcast-n$i.log" 2>&1 &
    PIDS+=($!)
  done
  NODES=$RAFTCAST_NODES; READY_PATH=/readyz
}

start_baseline() {
  check_ports 5011 5012 5013 "$REDIS_PORT"
  nice -n "$SUT_NICE" "$BENCH_DIR/scripts/redis.sh" start "$REDIS_PORT" "$DATA_DIR/redis"
  PID_FILES=("$DATA_DIR/redis/redis.pid")
  local i
  for i in 1 2 3; do
    (cd "$BENCH_DIR/baseline" && PORT="501$i" NODE_ID="$i" API_KEY="$API_KEY" \
      REDIS_URL="redis://127.0.0.1:$REDIS_PORT" PING_INTERVAL_MS=$PING_INTERVAL_MS \
      PING_TIMEOUT_MS=$PING_TIMEOUT_MS exec nice -n "$SUT_NICE" node server.js >>"$LOG_DIR/baseline-n$i.log" 2>&1) &
    PIDS+=($!)
  done
  NODES=$BASELINE_NODES; READY_PATH=/healthz
}

start_raw() {
  check_ports 5021
  nice -n "$SUT_NICE" "$BIN/raw_ceiling" --port 5021 --ping-interval-ms $PING_INTERVAL_MS \
    --ping-timeout-ms $PING_TIMEOUT_MS >>"$LOG_DIR/raw.log" 2>&1 &
  PIDS+=($!)
  NODES=$RAW_NODES; READY_PATH=/healthz
}

# ---------------------------------------------------------------- scenarios
FAILED=()

run_one() { # system scenario round
  local system=$1 scenario=$2 round=$3
  log "round $round: $system $scenario"
  "start_$system"
  if ! "$LOADGEN" wait --nodes "$NODES" --path "$READY_PATH" --timeout-s 60; then
    log "$system did not become ready"; FAILED+=("$round/$system/$scenario (not ready)")
    stop_system; return
  fi
  local extra=()
  for f in "${PID_FILES[@]}"; do extra+=(--pid-file "$f"); done
  if [[ $scenario == failover ]]; then
    case $system in
      raftcast) extra+=(--kill-leader) ;;
      baseline) extra+=(--disrupt-cmd "nice -n $SUT_NICE '$BENCH_DIR/scripts/redis.sh' restart $REDIS_PORT '$DATA_DIR/redis'") ;;
    esac
  fi
  local pids
  pids=$(IFS=,; echo "${PIDS[*]}")
  if ! "$LOADGEN" scenario --scenario "$scenario" --system "$system" --nodes "$NODES" \
      --api-key "$API_KEY" --pids "$pids" --profile "$MODE" --round "$round" \
      --threads "${BENCH_THREADS:-1}" "${extra[@]}" ${BENCH_ARGS:-} \
      --out "$JSON_DIR/$system-$scenario-r$round.json" 2>>"$LOG_DIR/loadgen.log"; then
    log "FAILED: $system $scenario (see $LOG_DIR/loadgen.log)"
    FAILED+=("$round/$system/$scenario")
  fi
  stop_system
}

for round in $(seq 1 "$ROUNDS"); do
  # A/B alternation: raftcast first in odd rounds, the baseline first in even ones.
  if (( round % 2 == 1 )); then order="raftcast baseline raw"; else order="baseline raftcast raw"; fi
  for scenario in ${SCENARIOS//,/ }; do
    for system in $order; do
      has "$SYSTEMS" "$system" || continue
      # The raw ceiling is one node and has no coordination layer: fan-out and connections only.
      if [[ $system == raw && ( $scenario == crossnode || $scenario == failover || $scenario == seed ) ]]; then continue; fi
      run_one "$system" "$scenario" "$round"
    done
  done
done

"$LOADGEN" report --results "$JSON_DIR" --out "$OUT"
if [[ ${#FAILED[@]} -gt 0 ]]; then
  { echo; echo "## Failed runs"; echo; printf -- '- %s\n' "${FAILED[@]}"; } >>"$OUT/RESULTS.md"
  log "failed: ${FAILED[*]}"
  exit 1
fi
log "done: $OUT/RESULTS.md"
