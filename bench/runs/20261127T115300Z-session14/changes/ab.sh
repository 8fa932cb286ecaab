#!/usr/bin/env bash
# allocator A/B: glibc (one arena, the default), mimalloc and jemalloc via LD_PRELOAD
cd /tmp/prof
declare -A P=( [glibc]="" [mimalloc]=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2 [jemalloc]=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 )
for r in 1 2 3; do
 for v in s14a s14b; do
  for mode in "50 3000" "1 1000"; do
   set -- $mode
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=/tmp/bins/$v bash cluster.sh >/dev/null 2>&1
   sleep 3
   BIN=/tmp/bins/$v EXTRA="--cross-members 3 --cross-batch $1 --cross-start-rate $2" timeout 600 bash cross.sh /tmp/prof/alloc/ab_r${r}_${v}_b$1.json 1 >/dev/null 2>&1
   python3 -c "
import json;d=json.load(open('/tmp/prof/alloc/ab_r${r}_${v}_b$1.json'))
for s in d['steps'][1:]: print('r$r $v b$1', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
