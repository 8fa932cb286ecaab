#!/bin/sh
LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2 exec /tmp/ab/mi/release/raftcast.bin "$@"
