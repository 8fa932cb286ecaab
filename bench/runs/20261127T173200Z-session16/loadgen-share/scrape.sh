#!/bin/bash
# scrape.sh OUT: every 2 s, the publish-to-deliver and commit histograms of the three nodes
while [ ! -f /tmp/prof/SCRAPE_STOP ]; do
  t=$(date +%s.%N)
  for n in 1 2 3; do curl -s -m 2 localhost:500$n/metrics | grep -E "^raftcast_(publish_to_deliver_seconds|raft_commit_seconds)_(bucket|count|sum)" | sed "s/^/$t n$n /"; done
  sleep 2
done >> $1
