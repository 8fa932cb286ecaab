#!/usr/bin/env bash
# A local three-node raftcast cluster for trying things out, in one command:
#
#     examples/cluster.sh            # build (debug) and run nodes 1-3 on ports 5000-5002
#     RELEASE=1 examples/cluster.sh  # the same with a release build
#     BIN=path/to/raftcast examples/cluster.sh   # a binary you already have
#
# Public ports 5000-5002 (BASE_PORT), peer ports 6000-6002 (BASE_PEER_PORT), state under
# ./cluster-data (DATA; delete it to start from scratch), logs in $DATA/n<id>.log.
# API key: $API_KEY (default dev-key-change-me-please). Browsers from $CORS_ORIGIN
# (default the trading_feed example's page, http://127.0.0.1:8090) may connect.
# Ctrl-C stops the three nodes. Not for production: fixed dev secrets, loopback only.
#
# Then, in other shells:
#     cargo run -- status                                   # the cluster at a glance
#     open http://127.0.0.1:5000/                           # the status page
#     cargo run --example trading_feed -- --api-key dev-key-change-me-please
#     nginx -p "$PWD" -c examples/nginx.conf -e /tmp/raftcast-nginx.err -g 'pid /tmp/raftcast-nginx.pid;'
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

API_KEY="${API_KEY:-dev-key-change-me-please}"
CLUSTER_SECRET="${CLUSTER_SECRET:-dev-cluster-secret-change-me}"
CORS_ORIGIN="${CORS_ORIGIN:-http://127.0.0.1:8090,http://localhost:8090}"
BASE_PORT="${BASE_PORT:-5000}"
BASE_PEER_PORT="${BASE_PEER_PORT:-6000}"
DATA="${DATA:-cluster-data}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [[ -n "${BIN:-}" ]]; then
  echo "using $BIN"
elif [[ -n "${RELEASE:-}" ]]; then
  cargo build --release --bin raftcast
  BIN="$CARGO_TARGET_DIR/release/raftcast"
else
  cargo build --bin raftcast
  BIN="$CARGO_TARGET_DIR/debug/raftcast"
fi

PEERS="1=127.0.0.1:$BASE_PEER_PORT,2=127.0.0.1:$((BASE_PEER_PORT + 1)),3=127.0.0.1:$((BASE_PEER_PORT + 2))"
mkdir -p "$DATA"
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the nodes (SIGTERM: they send server:shutdown and exit)"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
}
trap stop INT TERM EXIT

for id in 1 2 3; do
  "$BIN" --node-id "$id" --host 127.0.0.1 --port $((BASE_PORT + id - 1)) \
    --peer-port $((BASE_PEER_PORT + id - 1)) --peer-host 127.0.0.1 --peers "$PEERS" \
    --cluster-secret "$CLUSTER_SECRET" --api-key "$API_KEY" \
    --cors-origin "$CORS_ORIGIN" --data-dir "$DATA/n$id" \
    >>"$DATA/n$id.log" 2>&1 &
  pids+=("$!")
done

echo "waiting for the cluster to form..."
for id in 1 2 3; do
  port=$((BASE_PORT + id - 1))
  for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[$((id - 1))]}" 2>/dev/null; then
      echo "node $id exited; its log ($DATA/n$id.log):" >&2
      tail -20 "$DATA/n$id.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done

"$BIN" status --url "http://127.0.0.1:$BASE_PORT" || true
cat <<INFO

raftcast cluster up: http://127.0.0.1:$BASE_PORT  http://127.0.0.1:$((BASE_PORT + 1))  http://127.0.0.1:$((BASE_PORT + 2))
  status page   http://127.0.0.1:$BASE_PORT/
  status        $BIN status --url http://127.0.0.1:$BASE_PORT
  API key       $API_KEY
  demo          cargo run --example trading_feed -- --url http://127.0.0.1:$BASE_PORT --api-key $API_KEY
  logs          $DATA/n1.log $DATA/n2.log $DATA/n3.log
Ctrl-C stops the nodes.
INFO
wait
