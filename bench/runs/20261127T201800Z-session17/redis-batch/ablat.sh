#!/bin/bash
# usage: ablat.sh <binary> <tag>
rm -rf /tmp/sledmem/dr-$2
RAFTCAST_API_KEY=k $1 --port 5091 --backend redis --redis-url redis://127.0.0.1:6390 --redis-prefix p$RANDOM --data-dir /tmp/sledmem/dr-$2 > /tmp/sledmem/rl-$2.log 2>&1 &
P=$!
for i in $(seq 50); do curl -sf 127.0.0.1:5091/health >/dev/null && break; sleep 0.2; done
node /tmp/sledmem/batchlat.mjs 5091 20 >/dev/null
echo "$2: $(node /tmp/sledmem/batchlat.mjs 5091 300)"
kill $P; wait $P 2>/dev/null
