#!/bin/bash
cd /work/main
for v in base ctl base ctl; do
  echo "== $v $(date -u +%T)"
  CARGO_TARGET_DIR=/tmp/ab/$v bench/run.sh --no-build --rounds 1 --systems raftcast --scenarios idle,failover 2>&1 | grep -E "results in|M[0-9]|error|FAIL" | tail -12
done
echo done > /tmp/ab/AB2DONE
