#!/usr/bin/env bash
# base vs ctl (raft on a 1-worker multi-thread runtime) vs ctl2 (current-thread runtime)
# m30: crossnode full profile (100 rooms x 30 members, single emits, M4 then M5 ramp from 200/s)
# b50: 100 rooms x 3 members, batches of 50 from 3,000/s (3 steps)
cd /tmp/prof
for r in 1 2; do
 for v in base ctl ctl2; do
  for mode in "m30" "b50"; do
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=/tmp/ab/$v/release bash cluster.sh >/dev/null 2>&1
   sleep 3
   if [ $mode = m30 ]; then EX=""; ST=8; else EX="--cross-members 3 --cross-batch 50 --cross-start-rate 3000"; ST=3; fi
   BIN=/tmp/ab/$v/release EXTRA="$EX" timeout 600 bash cross.sh /tmp/prof/ctl/ab2_r${r}_${v}_$mode.json $ST >/dev/null 2>&1
   python3 -c "
import json;d=json.load(open('/tmp/prof/ctl/ab2_r${r}_${v}_$mode.json'))
for s in d['steps'][1:]: print('r$r $v $mode', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
echo done > /tmp/prof/ctl/DONE2
