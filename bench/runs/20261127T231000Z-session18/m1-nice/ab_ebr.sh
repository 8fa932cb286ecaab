#!/usr/bin/env bash
# A (shipped) vs B (sled's deferred garbage released on worker park and after each log flush): durable path CPU
cd /tmp/prof
for r in 1 2; do
 for v in A B; do
  T=/work/main/target/release; [[ $v == B ]] && T=/tmp/ab/ebr/release
  for mode in "50 3000 2" "1 1000 1"; do
   set -- $mode
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=$T bash cluster.sh >/dev/null 2>&1
   sleep 3
   BIN=$T EXTRA="--cross-members 3 --cross-batch $1 --cross-start-rate $2" timeout 600 bash cross.sh /tmp/prof/ebr/r${r}_${v}_b$1.json $3 >/dev/null 2>&1
   python3 -c "
import json;d=json.load(open('/tmp/prof/ebr/r${r}_${v}_b$1.json'))
for s in d['steps']: print('r$r $v b$1', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
echo EBRDONE
