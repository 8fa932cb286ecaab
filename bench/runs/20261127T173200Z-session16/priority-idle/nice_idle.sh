#!/bin/bash
# M1/M6 of the same build at BENCH_NICE=0 and 10, alternating
cd /work/main
for n in 0 10 10 0 0 10; do
  echo "== nice $n $(date -u +%T)"
  BENCH_NICE=$n CARGO_TARGET_DIR=/tmp/ab/base bench/run.sh --no-build --rounds 1 --systems raftcast --scenarios idle --out /tmp/ab/nice_idle_out 2>&1 | grep -E "results in|M[0-9]" | tail -4
done
echo done > /tmp/ab/NICEIDLEDONE
