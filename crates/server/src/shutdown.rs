//! A cloneable stop signal shared by every driver task.

use tokio::sync::watch;

/// Fires the [`Shutdown`] signal. Dropping the trigger also fires it.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Wait on this in every driver loop (`tokio::select!` on [`Shutdown::wait`]).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new signal and the trigger that fires it.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Resolves once shutdown was requested (immediately if it already was).
    pub async fn wait(&mut self) {
        // An Err means the trigger was dropped, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// True once shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

impl ShutdownTrigger {
    /// Ask every driver to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}
