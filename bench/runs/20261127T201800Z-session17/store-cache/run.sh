#!/bin/bash
# usage: run.sh cache_mb
cd /tmp/sledmem; rm -rf d-$1
RAFTCAST_API_KEY=k /work/main/target/release/raftcast --port 5090 --data-dir /tmp/sledmem/d-$1 --store-cache-mb $1 > r-$1.log 2>&1 &
P=$!
for i in $(seq 50); do curl -sf 127.0.0.1:5090/health >/dev/null && break; sleep 0.2; done
for k in 1 2; do node fill.mjs 5090 200000 2000 1000; echo "cache $1 after $((k*200))k: $(grep VmRSS /proc/$P/status) hwm $(grep VmHWM /proc/$P/status)"; done
# read back history of some rooms (replay path)
t0=$(date +%s.%N); for r in $(seq 0 50); do curl -sf -H 'authorization: Bearer k' "127.0.0.1:5090/api/rooms/r$r/history?since=0" -o /dev/null || echo "no history endpoint"; done; t1=$(date +%s.%N)
echo "history reads 51 rooms: $(echo "$t1-$t0"|bc)s  RSS $(grep VmRSS /proc/$P/status)"
kill $P; wait $P
