//! The `raftcast` binary: parse the command line, set up logging, run — wiring only.

use raftcast::config::{parse_invocation, Invocation, LogFormat};

fn init_tracing(level: &str, format: LogFormat) {
    use tracing_subscriber::prelude::*;
    // openraft narrates every election at info: keep it to warnings unless asked for.
    let level = if level.contains("openraft") {
        level.to_owned()
    } else {
        format!("{level},openraft=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // The last WARN/ERROR events, for the status page and `GET /cluster/errors`.
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(raftcast::telemetry_errors::layer())
        .init();
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before the server
/// starts: a signal that arrives between the first accepted connection and the first poll
/// of this future must still mean "graceful stop", not the default "die at once".
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot install a signal handler");
                        std::future::pending::<()>().await
                    }
                }
            };
            tokio::select! {
                _ = wait(int) => {},
                _ = wait(term) => {},
            }
            tracing::info!("signal received");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal received");
    }
}

fn main() -> std::process::ExitCode {
    // Before the runtime exists: the allocator setting applies to threads made after it.
    let arenas = raftcast::malloc::tune();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // sled frees what it replaced (pages, sealed log buffers) through crossbeam-epoch,
        // deferred in a bag of the thread that replaced it; handing that bag on whenever a
        // worker goes idle took ~1.3 KB off each idle connection in the M1 benchmark
        // (docs/performance.md, session 18).
        .on_thread_park(raftcast_raft::store::release_deferred)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Logging is not set up yet (it is per subcommand); stderr is where it would go.
            eprintln!("raftcast: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(async_main(arenas))
}

async fn async_main(arenas: raftcast::malloc::ArenaSetting) -> std::process::ExitCode {
    let invocation = match parse_invocation() {
        Ok(i) => i,
        Err(e) => e.exit(),
    };
    match invocation {
        Invocation::Serve(config) => {
            init_tracing(&config.log_level, config.log_format);
            tracing::info!(?arenas, "malloc arenas");
            let shutdown = shutdown_signal();
            for w in config.warnings() {
                tracing::warn!("{w}");
            }
            let listener = match tokio::net::TcpListener::bind(config.listen_addr()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(addr = %config.listen_addr(), error = %e, "cannot listen on the public port");
                    return std::process::ExitCode::from(1);
                }
            };
            match raftcast::run(config, listener, shutdown).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "raftcast stopped");
                    std::process::ExitCode::from(1)
                }
            }
        }
        Invocation::Chaos(args) => raftcast::chaos::run(args).await,
        Invocation::Status(args) => raftcast::cli::status::run(args).await,
    }
}
