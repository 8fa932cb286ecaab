#!/usr/bin/env bash
# perfwhenbusy.sh OUT SECONDS: waits (max 180 s) until the raftcast nodes use > 1 core for 2 s running, then perf records all CPUs
pids=$(cat /tmp/prof/run/pids)
tick() { local s=0; for p in $pids; do read -r -a f < /proc/$p/stat; s=$((s + f[13] + f[14])); done; echo $s; }
prev=$(tick); hot=0
for i in $(seq 1 180); do
  sleep 1; now=$(tick); d=$((now - prev)); prev=$now
  if [ $d -gt 100 ]; then hot=$((hot+1)); else hot=0; fi
  if [ $hot -ge 2 ]; then perf record -a -F 499 ${CG:-} -o $1 -- sleep $2 2>&1 | tail -1; exit 0; fi
done
echo "never busy"
