//! The front door's runtimes: one single-threaded runtime per core.

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::serve_one;

/// Serves a front-door listener from one single-threaded runtime per core, each accepting
/// on its own copy of the socket. A request, its upstream connection and both their tasks
/// then stay on one thread, with no cross-thread wake-ups: the layout nginx's workers
/// have, and measurably faster for a proxy than one work-stealing runtime (bench/README.md).
pub(super) async fn serve_per_core(
    listener: TcpListener,
    app: axum::Router,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::new();
    for n in 0..workers {
        let listener = listener.try_clone()?;
        let (app, stop) = (app.clone(), stop.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("frontdoor-{n}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            serve_one(listener, app, stop).await
                        })
                    });
                let _ = done_tx.send(result);
            })?;
        threads.push(done_rx);
    }
    for done in threads {
        done.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}
