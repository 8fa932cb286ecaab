#!/usr/bin/env bash
# ab_xb.sh LOG ROUNDS "cfg1 cfg2 ..." ; cfg = XB:XF ; EXTRA as for cross.sh
export BIN=${BIN:-/tmp/s20/A}
LOG=$1; ROUNDS=$2; CFGS=$3
for r in $(seq 1 $ROUNDS); do
 for c in $CFGS; do
  export XB=${c%%:*} XF=${c##*:}
  bash /tmp/prof/cluster.sh > /dev/null 2>&1
  out=/tmp/s20/xb_r${r}_${XB}_${XF}_$(echo $EXTRA | tr -dc '0-9a-z' | tail -c 20).json
  bash /tmp/prof/cross.sh $out ${STEPS:-1} > /dev/null 2>&1
  ent=$(curl -s 127.0.0.1:5001/metrics | grep -E "entry_commands_(sum|count)" | awk '{print $2}' | tr '\n' ' ')
  pids=$(cat /tmp/prof/run/pids); kill $pids; for i in $(seq 1 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done; kill -9 $pids 2>/dev/null; sleep 0.5
  python3 - "$out" "$r" "$c" "$ent" >> $LOG <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for s in d['steps']:
  if s['phase'].startswith('M5'):
    print('r%s %-7s tgt %6.0f ach %7.1f p50 %6.2f p99 %7.2f srv %5.2f lg %5.2f st %4.2f %s | entries(sum,count) %s'%(sys.argv[2],sys.argv[3],s['target_emits_per_s'],s['achieved_emits_per_s'],s['p50_ms'],s['p99_ms'],s['server_cpu_s'],s['loadgen_cpu_s'],s['steal_s'],s['pass'],sys.argv[4]))
PY
 done
done
