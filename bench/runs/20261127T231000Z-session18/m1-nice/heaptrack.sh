#!/bin/bash
# one idle round, node 1 under heaptrack; NICE=0|10
BIN=/work/main/target/release
D=/tmp/m1s/data; rm -rf $D; mkdir -p $D
PIDS=()
for i in 1 2 3; do
  W=""; [[ $i == 1 ]] && W="heaptrack -o /tmp/m1s/ht-nice$NICE"
  nice -n $NICE $W $BIN/raftcast --node-id $i --port 500$i --peer-port 600$i --peers 1=127.0.0.1:6001,2=127.0.0.1:6002,3=127.0.0.1:6003 \
   --cluster-secret s --api-key bench-key --host 127.0.0.1 --ping-interval-ms 25000 --ping-timeout-ms 20000 \
   --data-dir $D/n$i --log-level warn > /tmp/m1s/n$i.log 2>&1 &
  PIDS+=($!)
done
$BIN/raftcast-bench wait --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 --path /readyz --timeout-s 60
sleep 1
P1=$(pgrep -f "^/work/main/target/release/raftcast --node-id 1 ")
$BIN/raftcast-bench scenario --scenario idle --system raftcast --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 \
  --api-key bench-key --pids $P1,${PIDS[1]},${PIDS[2]} --profile full --round 1 --threads 1 --out /tmp/m1s/ht-nice$NICE.json 2>/tmp/m1s/lg.log | tail -3
for p in $P1 ${PIDS[1]} ${PIDS[2]}; do grep VmRSS /proc/$p/status; done
kill $P1 ${PIDS[1]} ${PIDS[2]}; wait
