#!/usr/bin/env bash
# ab21r.sh LOG ROUNDS : A = /tmp/s21/A (7aaa18a), B = /tmp/s21/B (new layout); requests of 200,
# one member per node per room, default history (1,000 per room): 6,750/s then 10,125/s (two
# steps, so the rooms are full during the second, as on a cluster that has run a while).
LOG=$1; ROUNDS=$2
run() { # arm
  export BIN=/tmp/s21/$1 SRVEXTRA="" LOGLEVEL=warn
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s21/abr/r${r}_$1.json
  EXTRA="--cross-members 3 --cross-batch 200 --cross-start-rate 6750 --refine-steps 0" bash /tmp/prof/cross.sh $out 2 > /dev/null 2>&1
  pids=$(cat /tmp/prof/run/pids); kill $pids
  for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "$1" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M4'): continue
  print('r%s %s %-15s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s'%(sys.argv[2],sys.argv[3],s['phase'],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass']))
PY
}
for r in $(seq 1 $ROUNDS); do
  for b in A B; do run $b; done
done
