#!/bin/bash
# usage: run.sh <binary> <label>: one node, 200 MB of history (200k events of ~1 KB in
# batches, 2,000 rooms), then SINGLE (default 30,000) single durable emits of ~1 KB; the node's CPU-s and
# snapshots during the single emits. Data and logs in $WORK (default /tmp).
BIN=$1; L=$2
HERE=$(cd "$(dirname "$0")" && pwd)
cd "${WORK:-/tmp}"; rm -rf d-$L
RAFTCAST_API_KEY=k $BIN --port 5090 --data-dir d-$L > r-$L.log 2>&1 &
P=$!
for i in $(seq 50); do curl -sf 127.0.0.1:5090/health >/dev/null && break; sleep 0.2; done
node /work/main/bench/runs/20261127T201800Z-session17/store-cache/fill.mjs 5090 200000 2000 1000
cpu() { awk '{print $14+$15}' /proc/$P/stat; }
c0=$(cpu); s0=$(grep -c "snapshot built" r-$L.log); t0=$(date +%s.%N)
node "$HERE/single.mjs" 5090 ${SINGLE:-30000} 2000 1000 8
c1=$(cpu); s1=$(grep -c "snapshot built" r-$L.log); t1=$(date +%s.%N)
echo "$L: single emits: node CPU $(echo "($c1-$c0)/100" | bc -l | cut -c1-6) s over $(echo "$t1-$t0" | bc | cut -c1-6) s, snapshots built $((s1-s0)), deferred logs $(grep -c 'snapshot deferred' r-$L.log), RSS $(grep VmRSS /proc/$P/status | tr -s ' ' | cut -f2) kB, data $(du -sm d-$L | cut -f1) MB"
kill $P; wait $P
rm -rf d-$L
