//! Graceful shutdown: the draining flag requests can see, and the signal handling that
//! sets it, waits `server.drain_delay`, then stops the listener gracefully.
//!
//! The order matters to whoever sends us traffic: first `/readyz` fails (load balancers
//! take the instance out) and every response says `Connection: close` (keep-alive clients
//! reconnect elsewhere after their current request); only then does the listener close,
//! and the requests in flight finish before the process exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;

/// Set once the server is shutting down; never cleared.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a signal asks the server to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or SIGINT: drain, then stop once the requests in flight have finished.
    Graceful,
    /// SIGQUIT, or a second SIGTERM/SIGINT during a drain: stop at once.
    Now,
}

/// The stop signals, registered before the server runs so none is missed (and the
/// default action, ending the process on the spot, no longer applies).
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must run inside a Tokio runtime.
    #[cfg(unix)]
    pub fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    #[cfg(not(unix))]
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The next stop signal, and what it asks for.
    #[cfg(unix)]
    pub async fn next(&mut self) -> (&'static str, Stop) {
        tokio::select! {
            _ = self.term.recv() => ("SIGTERM", Stop::Graceful),
            _ = self.int.recv() => ("SIGINT", Stop::Graceful),
            _ = self.quit.recv() => ("SIGQUIT", Stop::Now),
        }
    }

    #[cfg(not(unix))]
    pub async fn next(&mut self) -> (&'static str, Stop) {
        match tokio::signal::ctrl_c().await {
            Ok(()) => ("Ctrl-C", Stop::Graceful),
            Err(_) => std::future::pending().await,
        }
    }
}

/// Drains and stops one server.
#[derive(Clone)]
pub struct Shutdown {
    pub draining: Draining,
    pub server: ServerHandle,
    /// How long readiness fails, with every response closing its connection, before the
    /// listener closes.
    pub drain_delay: Duration,
}

impl Shutdown {
    /// Fails readiness and closes every connection after its current response, waits
    /// the drain delay, then stops the server gracefully: the listener closes, idle
    /// connections close, and the server future completes once the requests in flight
    /// have finished (or `server.shutdown_timeout` has passed).
    pub async fn drain(&self) {
        self.draining.start();
        tokio::time::sleep(self.drain_delay).await;
        tracing::info!("closing the listener; waiting for the requests in flight");
        self.server.stop(true).await;
    }

    /// Waits for signals: the first SIGTERM or SIGINT drains the server (see `drain`).
    /// Returns when the server must stop at once: on SIGQUIT, or on a second SIGTERM or
    /// SIGINT; never after a drain that ran its course.
    pub async fn on_signals(self, mut signals: Signals) {
        let (name, stop) = signals.next().await;
        if stop == Stop::Now {
            tracing::warn!(signal = name, "stopping at once");
            return;
        }
        tracing::info!(
            signal = name,
            drain_delay = ?self.drain_delay,
            "draining: /readyz fails and connections close after their current request"
        );
        tokio::select! {
            () = self.drain() => std::future::pending().await,
            (name, _) = signals.next() => {
                tracing::warn!(signal = name, "second signal during the drain: stopping at once");
            }
        }
    }
}
