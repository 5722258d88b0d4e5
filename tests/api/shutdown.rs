//! Graceful shutdown of a real `portcullis serve` under keep-alive load: on SIGTERM or
//! SIGINT `/readyz` fails at once, every response from then on says `Connection: close`,
//! the requests in flight finish, and the process exits as soon as they have (well before
//! `server.shutdown_timeout`), with status 0 and no panic.
//!
//! The load clients keep opening new connections after being told to close (a load
//! balancer would have stopped sending): those may race the listener closing, and only
//! they may be lost. Requests on kept-alive connections and requests in flight may not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header::CONNECTION;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestDatabase;
use crate::instances::{Server, command, run, stderr, write_key};

/// Long, so a drain that waits for it fails `EXIT_LIMIT`.
const SHUTDOWN_TIMEOUT: &str = "30s";
const DRAIN_DELAY: Duration = Duration::from_millis(500);
const EXIT_LIMIT: Duration = Duration::from_secs(10);
const LOAD_TASKS: usize = 6;
const RUNS: usize = 5;

/// A confidential client allowed `client_credentials`: its token requests are the slow
/// ones of the load (a database round trip and a signature).
#[derive(Clone)]
struct Service {
    id: String,
    secret: String,
}

impl Service {
    fn basic(&self) -> String {
        STANDARD.encode(format!("{}:{}", self.id, self.secret))
    }
}

/// What became of one request of a load task.
#[derive(Debug)]
enum Outcome {
    /// A complete response; `drain_seen`: the request started after `/readyz` had failed.
    Answered {
        path: &'static str,
        status: StatusCode,
        close: bool,
        drain_seen: bool,
    },
    /// The connection was refused: the listener had closed before the request was sent.
    Refused { after_signal: bool },
    /// The request was sent and no complete response came back.
    Cut {
        path: &'static str,
        reused_connection: bool,
        after_signal: bool,
        error: String,
    },
}

/// A keep-alive client firing requests one after another until the listener refuses it
/// (or `stop`): `/healthz`, the discovery document and a token request, in turn.
async fn load(
    base: String,
    service: Service,
    signalled: Arc<AtomicBool>,
    drain_seen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut outcomes = Vec::new();
    // Whether the next request goes out on a connection that already served one.
    let mut reused_connection = false;
    for i in 0usize.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let after_signal = signalled.load(Ordering::SeqCst);
        let seen = drain_seen.load(Ordering::SeqCst);
        let (path, request) = match i % 3 {
            0 => ("/healthz", http.get(format!("{base}/healthz"))),
            1 => (
                "/.well-known/openid-configuration",
                http.get(format!("{base}/.well-known/openid-configuration")),
            ),
            _ => (
                "/token",
                http.post(format!("{base}/token"))
                    .basic_auth(&service.id, Some(&service.secret))
                    .form(&[("grant_type", "client_credentials")]),
            ),
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let close = response
                    .headers()
                    .get(CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                match response.bytes().await {
                    Ok(_) => outcomes.push(Outcome::Answered {
                        path,
                        status,
                        close,
                        drain_seen: seen,
                    }),
                    Err(error) => outcomes.push(Outcome::Cut {
                        path,
                        reused_connection,
                        after_signal,
                        error: format!("reading the body: {error:?}"),
                    }),
                }
                reused_connection = !close;
            }
            Err(error) if error.is_connect() => {
                outcomes.push(Outcome::Refused { after_signal });
                break;
            }
            Err(error) => {
                outcomes.push(Outcome::Cut {
                    path,
                    reused_connection,
                    after_signal,
                    error: format!("{error:?}"),
                });
                reused_connection = false;
            }
        }
    }
    outcomes
}

/// A token request whose body trickles in over `spread`, on a connection of its own:
/// started before the signal, it is in flight while the server stops listening. Sends
/// `ready` once the request head is out; returns the raw response.
async fn trickled_token_request(
    addr: SocketAddr,
    service: &Service,
    spread: Duration,
    ready: tokio::sync::oneshot::Sender<()>,
) -> String {
    let body = "grant_type=client_credentials";
    let (first, rest) = body.split_at(10);
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{first}",
        service.basic(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let _ = ready.send(());
    tokio::time::sleep(spread).await;
    stream.write_all(rest.as_bytes()).await.expect("write rest");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection after the response")
        .expect("read the response");
    String::from_utf8_lossy(&response).into_owned()
}

/// Polls `/readyz` on fresh connections until it stops answering 200; returns what it
/// answered then (`None`: the connection was refused).
async fn readiness_after_signal(base: &str) -> Option<(StatusCode, Value)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        match fresh.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status() == StatusCode::OK => {}
            Ok(r) => {
                let status = r.status();
                return Some((status, r.json().await.unwrap_or(Value::Null)));
            }
            Err(e) if e.is_connect() => return None,
            Err(e) => panic!("GET /readyz after the signal: {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answered 200 5 s after the signal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_signal_drains_keep_alive_load_and_exits_as_soon_as_requests_in_flight_finish() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("master.key");
    write_key(&key_file);
    let env = [
        ("PORTCULLIS__SERVER__SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT),
        ("PORTCULLIS__SERVER__DRAIN_DELAY", "500ms"),
        ("PORTCULLIS__SERVER__WORKERS", "2"),
    ];
    let cmd = || command(dir.path(), &db.url, &key_file, &env);
    let out = run(
        cmd(),
        &["clients", "create", "--admin", "--name", "Load", "--json"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let service = Service {
        id: created["id"].as_str().expect("id").to_owned(),
        secret: created["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    };

    let mut draining_answers = 0;
    for run_no in 0..RUNS {
        let signal = if run_no % 2 == 0 { "TERM" } else { "INT" };
        let mut server = Server::start(cmd(), dir.path().join(format!("run{run_no}.log")));
        server.wait_ready().await;
        let base = server.base.clone();
        let addr: SocketAddr = base.trim_start_matches("http://").parse().expect("address");

        // A keep-alive connection that stays idle: it must not hold the exit up.
        let idle = reqwest::Client::new();
        let r = idle
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("idle client");
        assert_eq!(r.status(), StatusCode::OK);
        r.bytes().await.expect("body");

        let signalled = Arc::new(AtomicBool::new(false));
        let drain_seen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..LOAD_TASKS)
            .map(|_| {
                tokio::spawn(load(
                    base.clone(),
                    service.clone(),
                    Arc::clone(&signalled),
                    Arc::clone(&drain_seen),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        let (ready, started) = tokio::sync::oneshot::channel();
        let slow = {
            let service = service.clone();
            tokio::spawn(async move {
                trickled_token_request(addr, &service, DRAIN_DELAY + Duration::from_secs(1), ready)
                    .await
            })
        };
        started.await.expect("the trickled request started");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let signalled_at = Instant::now();
        signalled.store(true, Ordering::SeqCst);
        server.signal(signal);
        let readiness = readiness_after_signal(&base).await;
        drain_seen.store(true, Ordering::SeqCst);
        // `None`: the listener had already closed, which is as good.
        if let Some((status, body)) = &readiness {
            assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "run {run_no}");
            assert_eq!(*body, json!({"status": "draining"}), "run {run_no}");
            draining_answers += 1;
        }

        let (status, logs) = server.exit_within(EXIT_LIMIT).await;
        let took = signalled_at.elapsed();
        stop.store(true, Ordering::SeqCst);
        drop(idle);
        assert!(
            status.success(),
            "run {run_no} (SIG{signal}): {status}\n{logs}"
        );
        assert!(!logs.contains("panicked"), "run {run_no}:\n{logs}");
        assert!(took < EXIT_LIMIT, "run {run_no}: exit took {took:?}");

        let slow = slow.await.expect("trickled request task");
        assert!(
            slow.starts_with("HTTP/1.1 200"),
            "run {run_no}: the request in flight got\n{slow}\nserver log:\n{logs}"
        );
        assert!(
            slow.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "run {run_no}: {slow}"
        );
        assert!(slow.contains("\"access_token\""), "run {run_no}: {slow}");

        let mut answered = 0;
        let mut raced_listener_close = 0;
        for task in tasks {
            for outcome in task.await.expect("load task") {
                match outcome {
                    Outcome::Answered {
                        path,
                        status,
                        close,
                        drain_seen,
                    } => {
                        answered += 1;
                        assert_eq!(status, StatusCode::OK, "run {run_no}: {path}");
                        assert!(
                            close || !drain_seen,
                            "run {run_no}: {path} answered without Connection: close \
                             after /readyz failed"
                        );
                    }
                    Outcome::Refused { after_signal } => assert!(
                        after_signal,
                        "run {run_no}: a connection was refused before the signal"
                    ),
                    // A client that keeps opening connections after being told to
                    // go away can race the listener closing: the kernel completed the
                    // handshake, the server never read the request. Only that is
                    // forgiven; a request on a kept-alive connection, or before the
                    // signal, must never be lost.
                    Outcome::Cut {
                        reused_connection: false,
                        after_signal: true,
                        ..
                    } => raced_listener_close += 1,
                    Outcome::Cut {
                        path,
                        reused_connection,
                        error,
                        ..
                    } => panic!(
                        "run {run_no} (SIG{signal}): {path} was sent (on a {} connection) \
                         and cut: {error}\n{logs}",
                        if reused_connection {
                            "kept-alive"
                        } else {
                            "new"
                        }
                    ),
                }
            }
        }
        eprintln!(
            "run {run_no} (SIG{signal}): {answered} answered, {raced_listener_close} new \
             connections raced the listener closing, exit after {took:?}"
        );
        assert!(
            answered > LOAD_TASKS * 3,
            "run {run_no}: little load ({answered})"
        );
    }
    assert!(
        draining_answers > 0,
        "/readyz never answered 503 draining during the drain delay"
    );
}

/// Opens a connection and sends a token request whose body never completes.
async fn stalled_request(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn a_request_that_never_finishes_is_cut_by_the_timeout_or_a_second_signal_without_a_panic() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("master.key");
    write_key(&key_file);
    // (shutdown_timeout, second signal, how long the exit may take, at least)
    let cases = [
        ("1s", None, Duration::from_millis(900)),
        (SHUTDOWN_TIMEOUT, Some("INT"), Duration::ZERO),
    ];
    for (n, (timeout, second, at_least)) in cases.into_iter().enumerate() {
        let env = [
            ("PORTCULLIS__SERVER__SHUTDOWN_TIMEOUT", timeout),
            ("PORTCULLIS__SERVER__DRAIN_DELAY", "0s"),
        ];
        let mut server = Server::start(
            command(dir.path(), &db.url, &key_file, &env),
            dir.path().join(format!("stalled{n}.log")),
        );
        server.wait_ready().await;
        let addr: SocketAddr = server
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("address");
        let _stalled = stalled_request(addr).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let signalled = Instant::now();
        server.signal("TERM");
        if let Some(second) = second {
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.signal(second);
        }
        let (status, logs) = server.exit_within(Duration::from_secs(5)).await;
        let took = signalled.elapsed();
        assert!(status.success(), "case {n}: {status}\n{logs}");
        assert!(!logs.contains("panicked"), "case {n}:\n{logs}");
        assert!(took >= at_least, "case {n}: exit after {took:?}\n{logs}");
    }
}
