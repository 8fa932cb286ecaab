#!/usr/bin/env bash
# confirm.sh LOG ROUNDS : the release build of the new layout (/tmp/s21/B), default history.
# ramp200 = requests of 200 from 6,750/s, x1.5 per step, 2 refining steps (the highest rate
# within p99 50 ms); b50 = requests of 50 at 10,125/s (one step); one member per node per room.
LOG=$1; ROUNDS=$2
run() { # name bench-args steps
  export BIN=/tmp/s21/B SRVEXTRA=""
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s21/conf/r${r}_$1.json
  EXTRA="$2" bash /tmp/prof/cross.sh $out $3 > /dev/null 2>&1
  pids=$(cat /tmp/prof/run/pids); kill $pids
  for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "$1" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M4 w'): continue
  print('r%s %-8s %-15s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s'%(sys.argv[2],sys.argv[3],s['phase'],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass']))
PY
}
for r in $(seq 1 $ROUNDS); do
  run ramp200 "--cross-members 3 --cross-batch 200 --cross-start-rate 6750 --refine-steps 2" 4
  run b50 "--cross-members 3 --cross-batch 50 --cross-start-rate 10125 --refine-steps 0" 1
done
