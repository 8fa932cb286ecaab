#!/bin/bash
# experiment: the load generator at nice -10 (servers at 0) — does M2 rise?
cd /work/main
( while [ ! -f /tmp/ab/RENICE_STOP ]; do for p in $(pgrep -f 'release/raftcast-bench'); do renice -n -10 -p $p >/dev/null 2>&1; done; sleep 0.5; done ) &
for v in nice plain nice; do
  echo "== $v $(date -u +%T)"
  if [ $v = plain ]; then touch /tmp/ab/RENICE_STOP; else rm -f /tmp/ab/RENICE_STOP; ( while [ ! -f /tmp/ab/RENICE_STOP ]; do for p in $(pgrep -f 'release/raftcast-bench'); do renice -n -10 -p $p >/dev/null 2>&1; done; sleep 0.5; done ) & fi
  CARGO_TARGET_DIR=/tmp/ab/base bench/run.sh --no-build --rounds 1 --systems raftcast --scenarios fanout 2>&1 | grep -E "results in|M[0-9]" | tail -5
done
touch /tmp/ab/RENICE_STOP
echo done > /tmp/ab/RENICEDONE
