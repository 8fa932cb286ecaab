#!/bin/bash
# M1/M6 at nice 10: A = /work/main/target (shipped sled epoch handling), B = /tmp/ab/ebr (deferred garbage released), alternating
cd /work/main
for v in B A B B A B; do
  T=/work/main/target; [[ $v == B ]] && T=/tmp/ab/ebr
  echo "== $v $(date -u +%T)"
  BENCH_NICE=10 CARGO_TARGET_DIR=$T bench/run.sh --no-build --rounds 1 --systems raftcast --scenarios idle --out /tmp/m1s/ab_out_$v 2>&1 | grep -E "M1|M6" | tail -3
done
echo ABDONE
