#!/usr/bin/env bash
cd /tmp/prof
for r in 1 2; do
 for v in none 64 1024; do
  if [ $v = none ]; then unset GLIBC_TUNABLES; else export GLIBC_TUNABLES=glibc.malloc.tcache_count=$v; fi
  for mode in "50 3000 2" "200 6750 2"; do
   set -- $mode
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=/tmp/ab/B bash cluster.sh >/dev/null 2>&1
   sleep 3
   ( unset GLIBC_TUNABLES; BIN=/tmp/ab/B EXTRA="--cross-members 3 --cross-batch $1 --cross-start-rate $2" timeout 600 bash cross.sh /tmp/prof/tc/r${r}_${v}_b$1.json $3 >/dev/null 2>&1 )
   python3 -c "
import json;d=json.load(open('/tmp/prof/tc/r${r}_${v}_b$1.json'))
for s in d['steps']: print('r$r $v b$1', s['phase'][:8], round(s['target_emits_per_s']), round(s['achieved_emits_per_s']), s['p50_ms'], s['p99_ms'], round(s['server_cpu_s'],2), round(s['loadgen_cpu_s'],2), round(s['steal_s'],2), s['pass'])
"
  done
 done
done
pkill -f 'raftcast --node-id'
echo TCDONE
