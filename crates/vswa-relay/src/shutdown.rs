//! Shutdown as a named pair: one [`Shutdown`] trigger, any number of
//! [`ShutdownWatcher`]s that sessions select on, so no part of the relay re-reads a bare
//! flag its own way.

use std::future::Future;

use tokio::sync::watch;

/// The trigger. Dropping it counts as triggering, so a relay whose owner went away
/// stops instead of waiting forever.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// The observer side of a [`Shutdown`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownWatcher {
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A trigger that has not fired.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: watch::Sender::new(false),
        }
    }

    /// Fires it: every watcher's [`wait`](ShutdownWatcher::wait) completes.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A new observer.
    pub fn watcher(&self) -> ShutdownWatcher {
        ShutdownWatcher {
            rx: self.tx.subscribe(),
        }
    }

    /// Completes when triggered (for [`crate::Relay::serve`]'s `shutdown` argument).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        self.watcher().wait()
    }
}

impl ShutdownWatcher {
    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown has begun (at once if it already has, or if the trigger
    /// was dropped).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn watchers_see_the_trigger_and_a_dropped_trigger() {
        let shutdown = Shutdown::new();
        let watcher = shutdown.watcher();
        assert!(!watcher.is_triggered());
        let waiting = tokio::spawn(watcher.wait());
        shutdown.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("wait completes")
            .unwrap();
        assert!(watcher.is_triggered());
        // A watcher made after the fact completes at once.
        shutdown.watcher().wait().await;

        let dropped = Shutdown::new();
        let late = dropped.watcher();
        drop(dropped);
        tokio::time::timeout(std::time::Duration::from_secs(5), late.wait())
            .await
            .expect("a dropped trigger releases waiters");
    }
}
