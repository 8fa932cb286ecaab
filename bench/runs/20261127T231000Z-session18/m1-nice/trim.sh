#!/bin/bash
# one idle round at nice 10; ACTION=stats|trim at T seconds into the settle
ulimit -n 65536
BIN=/work/main/target/release
D=/tmp/m1s/data; rm -rf $D; mkdir -p $D
PIDS=()
for i in 1 2 3; do
  nice -n 10 $BIN/raftcast --node-id $i --port 500$i --peer-port 600$i --peers 1=127.0.0.1:6001,2=127.0.0.1:6002,3=127.0.0.1:6003 \
   --cluster-secret s --api-key bench-key --host 127.0.0.1 --ping-interval-ms 25000 --ping-timeout-ms 20000 \
   --data-dir $D/n$i --log-level warn > /tmp/m1s/n$i.log 2>&1 &
  PIDS+=($!)
done
$BIN/raftcast-bench wait --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 --path /readyz --timeout-s 60
(
  sleep ${AT:-45}
  for p in "${PIDS[@]}"; do
    echo "pid $p rss before $(grep VmRSS /proc/$p/status)"
    if [[ $ACTION == trim ]]; then
      gdb -p $p -batch -ex 'call (void)malloc_stats()' -ex 'call (int)malloc_trim(0)' -ex 'call (void)malloc_stats()' >/dev/null 2>&1
    else
      gdb -p $p -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1
    fi
    echo "pid $p rss after $(grep VmRSS /proc/$p/status)"
  done
) & SUB=$!
$BIN/raftcast-bench scenario --scenario idle --system raftcast --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 \
  --api-key bench-key --pids $(IFS=,; echo "${PIDS[*]}") --profile full --round 1 --threads 1 --out /tmp/m1s/out-$ACTION-$(date +%H%M%S).json 2>/tmp/m1s/lg.log | tail -3
wait $SUB
kill ${PIDS[@]}; wait
