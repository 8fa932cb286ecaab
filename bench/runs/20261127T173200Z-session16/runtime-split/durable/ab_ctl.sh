#!/usr/bin/env bash
# runtime-split A/B on the durable path: base vs ctl, batches of 50 from 3,000/s (3 steps), single emits from 1,000/s (2 steps)
cd /tmp/prof
for r in 1 2 3; do
 for v in base ctl; do
  for mode in "50 3000 3" "1 1000 2"; do
   set -- $mode
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=/tmp/ab/$v/release bash cluster.sh >/dev/null 2>&1
   sleep 3
   BIN=/tmp/ab/$v/release EXTRA="--cross-members 3 --cross-batch $1 --cross-start-rate $2" timeout 600 bash cross.sh /tmp/prof/ctl/ab_r${r}_${v}_b$1.json $3 >/dev/null 2>&1
   python3 -c "
import json;d=json.load(open('/tmp/prof/ctl/ab_r${r}_${v}_b$1.json'))
for s in d['steps'][1:]: print('r$r $v b$1', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
echo done > /tmp/prof/ctl/DONE
