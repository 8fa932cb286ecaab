#!/usr/bin/env bash
# ab21c.sh LOG ROUNDS : the experiment build; A = history one record per event (as shipped), C = XCHUNK=1
# (one record per room per entry: the write path only), B = XNOHIST=1 (no history). b200 at 10125/s, 1 step.

LOG=$1; ROUNDS=$2
export BIN=/tmp/ab/tgt-hack/release
run() { # arm mode-name extra steps
  unset XNOHIST XCHUNK; [ $1 = B ] && export XNOHIST=1; [ $1 = C ] && export XCHUNK=1
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s21/abc/r${r}_$1_$2.json
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
  for b in A C B; do run $b b200 "--cross-members 3 --cross-batch 200 --cross-start-rate 10125 --refine-steps 0" 1; done
done
