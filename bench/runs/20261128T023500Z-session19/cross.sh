#!/usr/bin/env bash
# cross.sh OUT STEPS ; EXTRA env adds args
BIN=${BIN:-/var/cache/raftcast-target/release}
D=/tmp/prof/run
pids=$(cat $D/pids | tr ' ' ',')
$BIN/raftcast-bench scenario --scenario crossnode --system raftcast \
  --nodes 127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003 --pids $pids \
  --profile full --max-steps ${2:-3} $EXTRA --out $1
