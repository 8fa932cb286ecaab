#!/usr/bin/env bash
# M1/M6 with the allocators: glibc one arena (default), jemalloc, jemalloc with one arena
cd /tmp/prof
J=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
for r in 1 2; do
 for v in glibc jemalloc jemalloc1; do
   pkill -f 'raftcast --node-id' ; sleep 2
   case $v in
     glibc) PRELOAD= BIN=/tmp/bins/s14a bash cluster.sh >/dev/null 2>&1 ;;
     jemalloc) PRELOAD=$J BIN=/tmp/bins/s14a bash cluster.sh >/dev/null 2>&1 ;;
     jemalloc1) MALLOC_CONF=narenas:1 PRELOAD=$J BIN=/tmp/bins/s14a bash cluster.sh >/dev/null 2>&1 ;;
   esac
   sleep 2
   pids=$(cat run/pids | tr ' ' ',')
   timeout 600 /tmp/bins/s14a/raftcast-bench scenario --scenario idle --system raftcast \
      --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 --pids $pids \
      --profile full --conns 10000 --settle-s 30 --out /tmp/prof/alloc/idle_r${r}_$v.json > /tmp/prof/alloc/idle_r${r}_$v.log 2>&1
   echo "r$r $v: $(grep -a 'M1\|M6' /tmp/prof/alloc/idle_r${r}_$v.log | tr -s ' ' | cut -c1-150 | tr '\n' '|')"
 done
done
pkill -f 'raftcast --node-id'
