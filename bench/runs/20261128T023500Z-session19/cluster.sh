#!/usr/bin/env bash
# start a 3-node release cluster in /tmp/prof/run; writes pids to /tmp/prof/run/pids
set -e
BIN=${BIN:-/var/cache/raftcast-target/release}
D=/tmp/prof/run; rm -rf $D; mkdir -p $D
pids=()
for i in 1 2 3; do
  env ${PRELOAD:+LD_PRELOAD=$PRELOAD} $BIN/raftcast --node-id $i --port 500$i --peer-port 600$i \
    --peers 1=127.0.0.1:6001,2=127.0.0.1:6002,3=127.0.0.1:6003 --cluster-secret s \
    --api-key k --host 127.0.0.1 --ping-interval-ms 25000 --ping-timeout-ms 20000 \
    --data-dir $D/n$i --max-connections-per-ip 100000 --log-level ${LOGLEVEL:-warn} $SRVEXTRA > $D/n$i.log 2>&1 &
  pids+=($!)
done
echo "${pids[*]}" > $D/pids
$BIN/raftcast-bench wait --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 --path /readyz
