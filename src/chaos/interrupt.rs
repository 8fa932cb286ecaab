//! SIGINT / SIGTERM as a value: the runner races a `--net netns` run against
//! [`interrupted`] so that Ctrl-C stops the nodes and removes the namespaces instead of
//! leaving them behind.

/// Resolves with the signal's name on the first SIGINT or SIGTERM (never, if neither can
/// be listened to).
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
