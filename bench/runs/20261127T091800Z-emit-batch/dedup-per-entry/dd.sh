#!/usr/bin/env bash
# A/B of s13a (per-proposal results) vs s13b (per-entry results): fixed rates
cd /tmp/prof
for r in 1 2 3; do
 for v in s13a s13b; do
  for mode in "50 3000" "1 1000"; do
   set -- $mode
   pkill -f 'raftcast --node-id' ; sleep 1
   BIN=/tmp/bins/$v bash cluster.sh >/dev/null 2>&1
   sleep 3
   BIN=/tmp/bins/$v EXTRA="--cross-members 3 --cross-batch $1 --cross-start-rate $2" timeout 600 bash cross.sh /tmp/prof/exp/dd_r${r}_${v}_b$1.json 1 >/dev/null 2>&1
   python3 -c "
import json;d=json.load(open('/tmp/prof/exp/dd_r${r}_${v}_b$1.json'))
for s in d['steps'][1:]: print('r$r $v b$1', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
