//! What the other files of the harness share, at the bottom of its module graph (it
//! imports none of them): the bench's client, user and redirect URI, and the plain data a
//! run produces — the samples and rows the driver measures and the report prints.

use std::collections::BTreeMap;
use std::time::Duration;

/// The redirect URI of the bench's web apps (and of their seeded codes).
pub const REDIRECT_URI: &str = "https://bench.example.com/cb";
/// The web app of the authorization_code scenarios.
pub const CLIENT_ID: &str = "bench-web";
/// The password of the bench's users.
pub const PASSWORD: &str = "correct horse battery staple";

/// The requests of one run: their latencies (sorted once the run is over) and errors.
#[derive(Default)]
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub errors: usize,
    /// Unexpected statuses, or failures without one, and how often.
    pub unexpected: BTreeMap<String, usize>,
}

/// One scenario's line of the results table.
pub struct Row {
    pub scenario: String,
    pub concurrency: usize,
    pub sample: Sample,
    /// Server CPU time spent during the run.
    pub server_cpu: Option<Duration>,
    /// CPU time of the Postgres backends during the run (none on SQLite: in the server).
    pub db_cpu: Option<Duration>,
    /// The server's RSS right after the run, in KiB.
    pub rss_after_kib: Option<u64>,
    /// Statuses counted as success besides the one expected (documented in the table).
    pub note: String,
}

/// What one cryptographic operation of the token endpoints costs, measured in the load
/// process with the server's own RS256 key (loaded from the database with the master key):
/// the median of `CRYPTO_ROUNDS` sequential calls, taken once the server is idle.
pub struct CryptoCosts {
    pub sign: Duration,
    pub verify: Duration,
    pub seal: Duration,
}

/// Sequential calls per cryptographic operation in `CryptoCosts`.
pub const CRYPTO_ROUNDS: usize = 300;
