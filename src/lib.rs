//! raftcast
