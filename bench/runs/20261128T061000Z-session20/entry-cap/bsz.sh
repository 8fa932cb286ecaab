#!/usr/bin/env bash
# bsz.sh LOG ROUNDS "b1 b2 ..." RATE : build B, m3, batches of b from RATE (1 step)
LOG=$1; ROUNDS=$2; SIZES=$3; RATE=${4:-10125}
for r in $(seq 1 $ROUNDS); do for b in $SIZES; do
  export BIN=/tmp/s20/${BUILD:-B}
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s20/ab/bsz_r${r}_${BUILD:-B}_b${b}_${RATE}.json
  EXTRA="--cross-members 3 --cross-batch $b --cross-start-rate $RATE" bash /tmp/prof/cross.sh $out ${STEPS:-1} > /dev/null 2>&1
  ent=$(curl -s 127.0.0.1:5001/metrics | grep -E "entry_commands_(sum|count)" | awk '{print $2}' | tr '\n' ' ')
  pids=$(cat /tmp/prof/run/pids); kill $pids
  for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "${BUILD:-B}" "b$b" "$ent" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M4'): continue
  print('r%s %s %-5s %-14s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s | leader entries(sum,count) %s'%(sys.argv[2],sys.argv[3],sys.argv[4],s['phase'],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass'],sys.argv[5]))
PY
done; done
