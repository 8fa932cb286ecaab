#!/usr/bin/env bash
cd /tmp/prof
export BIN=/work/main/target/release
for r in 1 2 3; do
 for v in base nodedup; do
  pkill -f 'raftcast --node-id' ; sleep 1
  if [ $v = nodedup ]; then export EXP_NO_DEDUP=1; else unset EXP_NO_DEDUP; fi
  BIN=/tmp/bins/expdedup bash cluster.sh >/dev/null 2>&1
  unset EXP_NO_DEDUP
  EXTRA="--cross-members 3 --cross-batch 50 --cross-start-rate 3000" timeout 600 bash cross.sh /tmp/prof/exp/d${r}_$v.json 1 >/dev/null 2>&1
  python3 -c "
import json;d=json.load(open('/tmp/prof/exp/d${r}_$v.json'))
for s in d['steps'][1:]: print('r$r $v', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
 done
done
pkill -f 'raftcast --node-id'
