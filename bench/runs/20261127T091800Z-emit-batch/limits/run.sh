#!/usr/bin/env bash
# run.sh ROUNDS : variants of EXP_MAX_BATCH/EXP_IN_FLIGHT, batch-50 M5 ramp from 2000/s
cd /tmp/prof
export BIN=/work/main/target/release
for r in $(seq 1 $1); do
 for v in "64 1" "256 1" "64 2" "256 2"; do
  set -- $v
  pkill -f 'raftcast --node-id' ; sleep 1
  EXP_MAX_BATCH=$1 EXP_IN_FLIGHT=$2 BIN=/tmp/bins/expdir bash cluster.sh >/dev/null 2>&1
  EXTRA="--cross-members 3 --cross-batch 50 --cross-start-rate 2000" timeout 600 bash cross.sh /tmp/prof/exp/r${r}_b$1_f$2.json 4 >/dev/null 2>&1
  python3 -c "
import json;d=json.load(open('/tmp/prof/exp/r${r}_b$1_f$2.json'))
for s in d['steps'][1:]: print('r$r b$1 f$2', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],1), round(s['loadgen_cpu_s'],1), round(s['steal_s'],1), s['pass'])
"
 done
done
pkill -f 'raftcast --node-id'
