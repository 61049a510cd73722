//! Cancellation without tokio-util: a cloneable token over a `watch` channel.

use std::sync::Arc;

use tokio::sync::watch;

/// Cancels a running replay. Clone it, hand one copy to [`run`](crate::run) and call
/// [`cancel`](CancelToken::cancel) on another (from a Ctrl-C handler, a UI button, ...). The replay
/// then stops sending, abandons what is in flight and returns its summary with `cancelled: true`.
#[derive(Debug, Clone)]
pub struct CancelToken(Arc<watch::Sender<bool>>);

impl CancelToken {
    pub fn new() -> Self {
        CancelToken(Arc::new(watch::Sender::new(false)))
    }

    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`cancel`](CancelToken::cancel) has been called (at once if it already was).
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only returns when the flag is set.
        let _ = rx.wait_for(|&c| c).await;
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        CancelToken::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn cancelling_wakes_every_waiter_and_stays_cancelled() {
        let token = CancelToken::new();
        let waiter = tokio::spawn({
            let t = token.clone();
            async move { t.cancelled().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        token.cancel();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(token.is_cancelled());
        tokio::time::timeout(Duration::from_secs(1), token.cancelled())
            .await
            .unwrap();
    }
}
