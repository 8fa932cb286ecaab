#!/usr/bin/env bash
# A (db2bbe3: applied events through a channel and a dispatch task) vs B (delivered by the state machine's handler)
cd /tmp/prof
for r in 1 2 3; do
 for v in A B; do
  T=/tmp/ab/$v
  for mode in "3 1 1000 1" "3 50 3000 2" "30 1 675 2"; do
   set -- $mode
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=$T bash cluster.sh >/dev/null 2>&1
   sleep 3
   BIN=$T EXTRA="--cross-members $1 --cross-batch $2 --cross-start-rate $3" timeout 600 bash cross.sh /tmp/prof/hand/r${r}_${v}_m$1_b$2.json $4 >/dev/null 2>&1
   python3 -c "
import json;d=json.load(open('/tmp/prof/hand/r${r}_${v}_m$1_b$2.json'))
for s in d['steps']: print('r$r $v m$1 b$2', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
echo HANDDONE
