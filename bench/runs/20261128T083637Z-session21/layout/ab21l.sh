#!/usr/bin/env bash
# ab21l.sh LOG ROUNDS : A = /tmp/s21/A (release build of 7aaa18a: history one record per
# event), B = /tmp/s21/B (release build with state/history.rs: one record per room per entry).
# Modes: b200 = requests of 200 at 10125/s, one member per node per room (default history,
# rooms filling); b200f = the same with --history-size 100 (rooms full: every publish trims);
# m30f = single emits at 1860/s, 30 members per room, --history-size 20 (rooms full). One step.
LOG=$1; ROUNDS=$2
run() { # arm mode-name bench-args server-args
  export BIN=/tmp/s21/$1 SRVEXTRA="$4"
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s21/abl/r${r}_$1_$2.json
  EXTRA="$3" bash /tmp/prof/cross.sh $out 1 > /dev/null 2>&1
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
B200="--cross-members 3 --cross-batch 200 --cross-start-rate 10125 --refine-steps 0"
M30="--cross-start-rate 1860 --refine-steps 0"
for r in $(seq 1 $ROUNDS); do
  for b in A B; do run $b b200 "$B200" ""; done
  for b in B A; do run $b b200f "$B200" "--history-size 100"; done
  for b in A B; do run $b m30f "$M30" "--history-size 20"; done
done
