#!/bin/bash
cd /work/main
for i in 1 2 3; do
  for v in base mi; do
    echo "== $v round $i $(date -u +%T)"
    CARGO_TARGET_DIR=/tmp/ab/$v bench/run.sh --no-build --rounds 1 --systems raftcast --scenarios idle --out /tmp/m1ab/$v-$i > /tmp/m1ab/$v-$i.log 2>&1
    grep -h '"M1"' -A3 /tmp/m1ab/$v-$i/*.json 2>/dev/null | head -0
  done
done
echo done $(date -u +%T)
