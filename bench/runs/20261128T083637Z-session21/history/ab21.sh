#!/usr/bin/env bash
# ab21.sh LOG ROUNDS : one release build of the experiment tree (experiment.diff: history write skipped when
# XNOHIST is set); A = as built (history written), B = XNOHIST=1 (no history: the upper bound
# of any history layout change). Modes: b200 from 10125/s (1 step), m30 single emits at 1860/s (1 step).
LOG=$1; ROUNDS=$2
export BIN=/tmp/ab/tgt-hack/release
run() { # arm mode-name extra steps
  if [ $1 = B ]; then export XNOHIST=1; else unset XNOHIST; fi
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s21/ab/r${r}_$1_$2.json
  EXTRA="$3" bash /tmp/prof/cross.sh $out $4 > /dev/null 2>&1
  pids=$(cat /tmp/prof/run/pids); kill $pids
  for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "$1" "$2" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M4 w'): continue
  print('r%s %s %-5s %-14s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s'%(sys.argv[2],sys.argv[3],sys.argv[4],s['phase'],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass']))
PY
}
for r in $(seq 1 $ROUNDS); do
  for b in A B; do run $b b200 "--cross-members 3 --cross-batch 200 --cross-start-rate 10125 --refine-steps 0" 1; done
  for b in B A; do run $b m30 "--cross-start-rate 1860 --refine-steps 0" 1; done
done
