//! raftcast-raft
