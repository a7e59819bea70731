//! One way to stop: a signal (SIGINT, SIGTERM) or the pipeline ending tells the pipeline, the
//! web server and whoever else listens, at once. The pipeline's thread looks at it between
//! rounds; async code awaits it.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A stop that any clone triggers and every clone sees.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::Sender::new(false)))
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Triggered by SIGINT or SIGTERM; a second one exits at once with status 130 (for a stop
    /// that hangs, the operator's Ctrl-C still works).
    pub fn on_signals() -> std::io::Result<Shutdown> {
        let runtime = crate::runtime::runtime()?;
        let shutdown = Shutdown::new();
        // Registered here, before this returns, so that no early signal is missed.
        let _context = runtime.enter();
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let stop = shutdown.clone();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if stop.is_triggered() {
                    std::process::exit(130);
                }
                stop.trigger();
            }
        });
        Ok(shutdown)
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until triggered.
    pub async fn triggered(&self) {
        let mut triggered = self.0.subscribe();
        // The sender lives in `self`: it cannot close while this waits.
        let _ = triggered.wait_for(|&stop| stop).await;
    }
}
