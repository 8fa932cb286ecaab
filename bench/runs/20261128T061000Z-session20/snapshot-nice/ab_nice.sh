#!/usr/bin/env bash
# ab_nice.sh LOG ROUNDS : B = /tmp/s20/B (7689eb9: snapshot dump in tokio's blocking pool),
# C = /tmp/s20/C (dump on its own thread at nice +10); requests of 200 at 10,125/s, m3, 1 step;
# logs the leader's "snapshot built" line (LOGLEVEL=info).
LOG=$1; ROUNDS=$2
export LOGLEVEL=info
for r in $(seq 1 $ROUNDS); do
 for b in ${ORDER:-B C}; do
  export BIN=/tmp/s20/$b
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s20/nice/r${r}_$b.json
  EXTRA="--cross-members 3 --cross-batch 200 --cross-start-rate 10125" bash /tmp/prof/cross.sh $out 1 > /dev/null 2>&1
  snap=$(grep -h "snapshot built" /tmp/prof/run/n*.log | sed 's/\x1b\[[0-9;]*m//g' | grep -o "id=[^ ]* bytes=[0-9]* dump_ms=[0-9]* write_ms=[0-9]*" | tr '\n' ';')
  pids=$(cat /tmp/prof/run/pids); kill $pids
  for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
  kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "$b" "$snap" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M5'):
    print('r%s %s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s | %s'%(sys.argv[2],sys.argv[3],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass'],sys.argv[4]))
PY
 done
done
