//! Operator subcommands of the `raftcast` binary that talk to a running node
//! (the server itself and `raftcast chaos` live elsewhere).

pub mod status;
