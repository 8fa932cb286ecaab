//! Why the network-namespace mode (`raftcast chaos --net netns`) could not set up, act or
//! clean up.

/// A failure of the namespace mode.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Namespaces and links need root.
    #[error(
        "--net netns needs root (this process runs as uid {0}); run it as root or use the \
         default --net switch"
    )]
    NotRoot(u32),
    /// `ip` or `tc` (iproute2) is missing.
    #[error("--net netns needs iproute2: {0}")]
    NoTool(String),
    /// The kernel or the sandbox refuses network namespaces.
    #[error("--net netns: cannot create a network namespace ({0}); use the default --net switch")]
    Unavailable(String),
    /// `ip` or `tc` could not be started, timed out, or failed.
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    /// Every candidate private subnet is already in use on this host.
    #[error("no free subnet 10.231.x.0/24 on this host (all overlap an address or route)")]
    NoSubnet,
}
