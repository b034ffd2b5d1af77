//! How a change made through the Admin APIs is applied: one at a time (`begin`), written to
//! the layer in the state directory (`config::layer`), then handed to the server's loop,
//! which applies it as it applies a saved file — a new generation, new revisions, commands
//! restarted — before the API answers, so the next request obeys it.

use std::sync::OnceLock;

use tokio::sync::{MutexGuard, mpsc, oneshot};

use crate::config::Config;

/// A resolved configuration to put in force, and where to say how it went: the new
/// generation, or why it was refused.
pub type Apply = (Config, oneshot::Sender<Result<u64, String>>);

#[derive(Default)]
pub struct Changes {
    /// Held from reading the layer to applying the change: two changes never interleave,
    /// so neither loses the other's edit.
    serial: tokio::sync::Mutex<()>,
    /// The server loop's inbox, once it runs.
    loop_inbox: OnceLock<mpsc::Sender<Apply>>,
}

impl Changes {
    /// Waits for any other change to finish; the change is this caller's until the guard
    /// drops.
    pub async fn begin(&self) -> MutexGuard<'_, ()> {
        self.serial.lock().await
    }

    /// Called once by the server loop: changes reach it from now on.
    pub fn connect(&self) -> mpsc::Receiver<Apply> {
        let (tx, rx) = mpsc::channel(1);
        let _ = self.loop_inbox.set(tx);
        rx
    }

    /// Hands `config` to the server loop and waits for it to be in force: the generation,
    /// or why it was refused (a loop that has ended refuses: frontdoor is stopping). With
    /// no loop ever connected (an embedder serving the router alone), `config` comes back
    /// for the caller to swap in itself.
    pub async fn apply(&self, config: Config) -> Result<Result<u64, String>, Box<Config>> {
        let Some(inbox) = self.loop_inbox.get() else {
            return Err(Box::new(config));
        };
        let stopping = || Err("frontdoor is shutting down".to_owned());
        let (tx, rx) = oneshot::channel();
        if inbox.send((config, tx)).await.is_err() {
            return Ok(stopping());
        }
        Ok(rx.await.unwrap_or_else(|_| stopping()))
    }
}
