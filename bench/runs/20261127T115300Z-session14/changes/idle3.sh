#!/usr/bin/env bash
cd /tmp/prof
for r in 1 2; do
 for v in s14a s14c; do
   pkill -f 'raftcast --node-id' ; sleep 2
   BIN=/tmp/bins/$v bash cluster.sh >/dev/null 2>&1
   sleep 2
   pids=$(cat run/pids | tr ' ' ',')
   timeout 600 /tmp/bins/s14a/raftcast-bench scenario --scenario idle --system raftcast \
      --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 --pids $pids \
      --profile full --conns 10000 --settle-s 30 --out /tmp/prof/alloc/idle3_r${r}_$v.json > /tmp/prof/alloc/idle3_r${r}_$v.log 2>&1
   echo "r$r $v: $(grep -a 'M1\|M6' /tmp/prof/alloc/idle3_r${r}_$v.log | tr -s ' ' | sed 's/(loadgen[^)]*)//g' | cut -c1-150 | tr '\n' '|')"
 done
done
pkill -f 'raftcast --node-id'
