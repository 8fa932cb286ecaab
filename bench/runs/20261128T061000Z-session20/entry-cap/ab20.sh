#!/usr/bin/env bash
# ab20.sh LOG ROUNDS : A = /tmp/s20/A (raftcast built with an XB override, run with XB=64:
# publishes capped at 64 per entry as at eb99319), B = /tmp/s20/B (MAX_PUBLISH_BATCH 512).
# Modes: m3 b200 from 10125/s (1 step); m3 b50 from 6750/s (1 step); m30 single emits from 1519/s (2 steps).
LOG=$1; ROUNDS=$2
run() { # build mode-name extra steps
  export BIN=/tmp/s20/$1 XB=64
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s20/ab/r${r}_$1_$2.json
  EXTRA="$3" bash /tmp/prof/cross.sh $out $4 > /dev/null 2>&1
  ent=$(curl -s 127.0.0.1:5001/metrics | grep -E "entry_commands_(sum|count)" | awk '{print $2}' | tr '\n' ' ')
  pids=$(cat /tmp/prof/run/pids); kill $pids
  for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "$1" "$2" "$ent" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M4 w'): continue
  print('r%s %s %-5s %-14s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s | leader entries(sum,count) %s'%(sys.argv[2],sys.argv[3],sys.argv[4],s['phase'],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass'],sys.argv[5]))
PY
}
for r in $(seq 1 $ROUNDS); do
  for b in A B; do run $b b200 "--cross-members 3 --cross-batch 200 --cross-start-rate 10125" 1; done
  for b in B A; do run $b b50 "--cross-members 3 --cross-batch 50 --cross-start-rate 6750" 1; done
  for b in A B; do run $b m30 "--cross-start-rate 1519" 2; done
done
