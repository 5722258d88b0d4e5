//! What each scenario does: the requests it sends, what counts as success, and the
//! codes, tokens and sign-ins it needs first. The browser and `/token` requests come from
//! the flows the API tests use (`tests/api/helpers/flow.rs`).

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use portcullis::config::Settings;
use portcullis::domain::session::BrowserSession;
use portcullis::domain::user::User;
use portcullis::password::PasswordHasher;
use portcullis::storage::Store;
use reqwest::StatusCode;
use time::OffsetDateTime;

use crate::common::{CLIENT_ID, PASSWORD, REDIRECT_URI, Row};
use crate::driver::{
    OpFuture, Outcome1, Runner, backend_cpu_between, crypto_costs, exchange, exchange_json,
    http_client, load, proc_cpu, proc_status,
};
use crate::flow::{self, Pkce};
use crate::options::Options;
use crate::report::ProcessFigures;
use crate::seed::{create_user, register_client, seed_codes};

/// A web app allowed the refresh_token grant (the refresh scenario).
const REFRESH_CLIENT_ID: &str = "bench-app";
/// A service: client_credentials for itself, introspection of users' tokens.
const SERVICE_CLIENT_ID: &str = "bench-service";
const API_SCOPE: &str = "api.read";
const WRONG_PASSWORD: &str = "not the password at all";
const LOGIN_USER: &str = "bench";
const FLOOD_USER: &str = "bench-flood";
/// The timeout of the load process's browsers (its API clients: `driver::http_client`).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// Sign-in scenario: argon2id is deliberately expensive, so fewer requests.
const LOGIN_REQUESTS: usize = 200;
const LOGIN_CONCURRENCY: usize = 4;
/// The "token requests keep their latency" check: /token at this concurrency, alone and
/// while `FLOOD_CONCURRENCY` sign-ins keep the argon2 pool saturated.
const SIDE_TOKEN_REQUESTS: usize = 500;
const SIDE_TOKEN_CONCURRENCY: usize = 4;
const FLOOD_CONCURRENCY: usize = 8;
/// Upper bound on flood sign-ins (well under `login.max_failures` below).
const FLOOD_MAX: usize = 600;
const TOKEN_WARMUP: usize = 100;
const GET_WARMUP: usize = 200;
const LOGIN_WARMUP: usize = 8;

/// The web app's seeded codes, and what redeeming one takes.
struct Seeded {
    codes: Vec<String>,
    verifier: String,
    secret: String,
}

/// Where each run takes its codes from `Seeded::codes`: [0] the userinfo token, [1] the
/// introspected token, then the warm-up, the main run, the idle side run and the flood run.
struct CodeRanges {
    introspect: usize,
    warm: usize,
    main: usize,
    idle: usize,
    flood: usize,
}

impl CodeRanges {
    fn new(token_requests: usize) -> Self {
        let warm = 2;
        let main = warm + TOKEN_WARMUP;
        let idle = main + token_requests;
        Self {
            introspect: 1,
            warm,
            main,
            idle,
            flood: idle + SIDE_TOKEN_REQUESTS,
        }
    }

    fn total(&self) -> usize {
        self.flood + SIDE_TOKEN_REQUESTS
    }
}

/// What the scenarios share: the server, the seeded clients, user, session and codes.
struct Bench<'a> {
    opts: &'a Options,
    store: &'a Arc<dyn Store>,
    base: &'a str,
    runner: &'a Runner,
    user: User,
    /// The session every seeded code of the web app points at.
    session: BrowserSession,
    challenge: String,
    seeded: Arc<Seeded>,
    at: CodeRanges,
    refresh_secret: String,
    service_secret: Arc<String>,
}

/// Seeds, runs every scenario in order, and measures the cryptography afterwards.
pub async fn exercise(
    opts: &Options,
    store: &Arc<dyn Store>,
    settings: &Settings,
    base: &str,
    runner: &Runner,
    key_file: &Path,
) -> Result<(Vec<Row>, ProcessFigures)> {
    let bench = Bench::seed(opts, store, settings, base, runner).await?;
    let mut rows = Vec::new();
    for path in ["/.well-known/openid-configuration", "/jwks.json"] {
        rows.push(bench.read_only(path).await?);
    }
    rows.push(bench.userinfo().await?);
    rows.push(bench.token_code().await?);
    rows.push(bench.refresh().await?);
    rows.push(bench.client_credentials().await?);
    rows.push(bench.introspect().await?);
    rows.push(bench.wrong_password().await?);
    rows.extend(bench.token_beside_a_login_flood().await?);

    let pid = runner.pid;
    let after_rss_kib = proc_status(pid, "VmRSS");
    let peak_rss_kib = proc_status(pid, "VmHWM");
    let after_threads = proc_status(pid, "Threads");
    eprint!("benches/load: RS256 and AES-GCM costs in this process … ");
    let crypto = crypto_costs(store, key_file, base).await?;
    eprintln!("done");
    let process = ProcessFigures {
        first_start: Duration::ZERO,
        restart: Duration::ZERO,
        idle_rss_kib: None,
        after_rss_kib,
        peak_rss_kib,
        idle_threads: None,
        after_threads,
        crypto,
    };
    Ok((rows, process))
}

impl<'a> Bench<'a> {
    /// The web app of the authorization_code scenarios (no refresh grant, so redeeming a
    /// code creates no refresh family), the app of the refresh scenario, a service
    /// (resource server) for client_credentials and introspection, the users, one real
    /// session signed in through the pages, and the web app's codes in that session.
    async fn seed(
        opts: &'a Options,
        store: &'a Arc<dyn Store>,
        settings: &Settings,
        base: &'a str,
        runner: &'a Runner,
    ) -> Result<Self> {
        let secret = register_client(
            store.as_ref(),
            CLIENT_ID,
            &["authorization_code"],
            &[],
            true,
        )
        .await?;
        let refresh_secret = register_client(
            store.as_ref(),
            REFRESH_CLIENT_ID,
            &["authorization_code", "refresh_token"],
            &[],
            true,
        )
        .await?;
        let service_secret = Arc::new(
            register_client(
                store.as_ref(),
                SERVICE_CLIENT_ID,
                &["client_credentials"],
                &[API_SCOPE],
                false,
            )
            .await?,
        );
        let hasher = PasswordHasher::new(&settings.password)?;
        let user = create_user(store.as_ref(), &hasher, LOGIN_USER).await?;
        create_user(store.as_ref(), &hasher, FLOOD_USER).await?;

        sign_in(base).await?;
        let session = store
            .list_sessions(user.id, OffsetDateTime::now_utc())
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("the seeding sign-in created no session"))?;

        let pkce = Pkce::generate()?;
        let at = CodeRanges::new(opts.token_requests);
        let wanted = at.total();
        eprint!("benches/load: seeding {wanted} authorization codes … ");
        let t = Instant::now();
        let codes = seed_codes(store, CLIENT_ID, &user, &session, &pkce.challenge, wanted).await?;
        eprintln!("{:.1} s", t.elapsed().as_secs_f64());
        Ok(Self {
            opts,
            store,
            base,
            runner,
            user,
            session,
            challenge: pkce.challenge,
            seeded: Arc::new(Seeded {
                codes,
                verifier: pkce.verifier,
                secret,
            }),
            at,
            refresh_secret,
            service_secret,
        })
    }

    /// A read-only endpoint: `GET path`.
    async fn read_only(&self, path: &str) -> Result<Row> {
        let c = self.opts.concurrency;
        let client = http_client(c)?;
        let url = format!("{}{path}", self.base);
        let op = move |_| exchange(client.get(&url));
        let name = format!("`GET {path}`");
        self.warm_then_measure(&name, GET_WARMUP, self.opts.requests, c, op)
            .await
    }

    /// `/userinfo` with one access token from a redeemed code.
    async fn userinfo(&self) -> Result<Row> {
        let c = self.opts.concurrency;
        let client = http_client(c)?;
        let token = self.access_token(&client, 0).await?;
        let url = format!("{}/userinfo", self.base);
        let op = move |_| exchange(client.get(&url).bearer_auth(&token));
        self.warm_then_measure("`GET /userinfo`", GET_WARMUP, self.opts.requests, c, op)
            .await
    }

    /// `/token`, authorization_code grant, every request a distinct code.
    async fn token_code(&self) -> Result<Row> {
        let c = self.opts.concurrency;
        let client = http_client(c)?;
        load(
            TOKEN_WARMUP,
            c,
            200,
            None,
            self.token_op(client.clone(), self.at.warm),
        )
        .await?;
        self.runner
            .measure(
                "`POST /token` (authorization_code)",
                self.opts.token_requests,
                c,
                200,
                self.token_op(client, self.at.main),
            )
            .await
    }

    /// `/token`, refresh_token grant: one rotation chain per concurrent worker, each in a
    /// browser session of its own (as different users' apps would be: refreshes of one
    /// session serialise on its row, which each session-bound refresh updates). The chains
    /// start from codes redeemed through /token; the warm-up and the run continue them.
    async fn refresh(&self) -> Result<Row> {
        let c = self.opts.concurrency;
        eprint!("benches/load: starting {c} refresh chains (sign-ins, codes, redemptions) … ");
        let t = Instant::now();
        for _ in 0..c {
            sign_in(self.base).await?;
        }
        let sessions: Vec<BrowserSession> = self
            .store
            .list_sessions(self.user.id, OffsetDateTime::now_utc())
            .await?
            .into_iter()
            .filter(|s| s.id != self.session.id)
            .collect();
        if sessions.len() < c {
            bail!("{c} sign-ins made only {} new sessions", sessions.len());
        }
        let client = http_client(c)?;
        let mut tokens = VecDeque::with_capacity(c);
        for chain_session in &sessions[..c] {
            let codes = seed_codes(
                self.store,
                REFRESH_CLIENT_ID,
                &self.user,
                chain_session,
                &self.challenge,
                1,
            )
            .await?;
            let code = codes.first().ok_or_else(|| anyhow!("no code was seeded"))?;
            let request = flow::code_exchange(
                &client,
                self.base,
                REFRESH_CLIENT_ID,
                Some(&self.refresh_secret),
                code,
                REDIRECT_URI,
                &self.seeded.verifier,
            );
            tokens.push_back(json_str(&redeem(request).await?, "refresh_token")?);
        }
        eprintln!("{:.1} s", t.elapsed().as_secs_f64());
        let chains = Arc::new(Chains(std::sync::Mutex::new(tokens)));
        let op = refresh_op(client, self.base, &self.refresh_secret, &chains);
        let mut row = self
            .warm_then_measure(
                "`POST /token` (refresh_token)",
                TOKEN_WARMUP,
                self.opts.token_requests,
                c,
                op,
            )
            .await?;
        row.note = format!("{c} rotation chains, every token presented once");
        Ok(row)
    }

    /// `/token`, client_credentials grant: a service asks for a token for itself.
    async fn client_credentials(&self) -> Result<Row> {
        let c = self.opts.concurrency;
        let client = http_client(c)?;
        let url = format!("{}/token", self.base);
        let op = {
            let secret = Arc::clone(&self.service_secret);
            move |_| {
                exchange(
                    client
                        .post(&url)
                        .basic_auth(SERVICE_CLIENT_ID, Some(&*secret))
                        .form(&[("grant_type", "client_credentials"), ("scope", API_SCOPE)]),
                )
            }
        };
        self.warm_then_measure(
            "`POST /token` (client_credentials)",
            TOKEN_WARMUP,
            self.opts.token_requests,
            c,
            op,
        )
        .await
    }

    /// `/introspect`: the service asks about a user's live access token (redeemed just
    /// now, so it cannot expire during the run); every answer must say `active: true`.
    async fn introspect(&self) -> Result<Row> {
        let c = self.opts.concurrency;
        let client = http_client(c)?;
        let token = Arc::new(self.access_token(&client, self.at.introspect).await?);
        let url = Arc::new(format!("{}/introspect", self.base));
        let service_secret = Arc::clone(&self.service_secret);
        let op = move |_| {
            let (client, url, token, secret) = (
                client.clone(),
                Arc::clone(&url),
                Arc::clone(&token),
                Arc::clone(&service_secret),
            );
            async move {
                let request = client
                    .post(url.as_str())
                    .basic_auth(SERVICE_CLIENT_ID, Some(&*secret))
                    .form(&[
                        ("token", token.as_str()),
                        ("token_type_hint", "access_token"),
                    ]);
                let (status, body) = exchange_json(request).await?;
                if status == 200 && body["active"] != serde_json::Value::Bool(true) {
                    return Err("200 with active: false");
                }
                Ok(status)
            }
        };
        let mut row = self
            .warm_then_measure(
                "`POST /introspect` (a user's access token)",
                GET_WARMUP,
                self.opts.requests,
                c,
                op,
            )
            .await?;
        row.note = "every answer checked for `active: true`".into();
        Ok(row)
    }

    /// Sign-in with a wrong password: argon2id on the bounded pool.
    async fn wrong_password(&self) -> Result<Row> {
        let op = wrong_password_op(self.base, LOGIN_USER).await?;
        let mut row = self
            .warm_then_measure(
                "`POST /login` (wrong password)",
                LOGIN_WARMUP,
                LOGIN_REQUESTS,
                LOGIN_CONCURRENCY,
                op,
            )
            .await?;
        row.note = "200 = the form again with \"Incorrect username or password\"".into();
        Ok(row)
    }

    /// "Token requests keep their latency": /token at concurrency 4 alone, then while 8
    /// concurrent sign-ins keep the argon2 pool saturated. Three rows: the baseline, the
    /// run beside the flood, and the flood itself.
    async fn token_beside_a_login_flood(&self) -> Result<[Row; 3]> {
        let (runner, pid) = (self.runner, self.runner.pid);
        let client = http_client(SIDE_TOKEN_CONCURRENCY)?;
        let mut idle = runner
            .measure(
                "`POST /token`, idle server",
                SIDE_TOKEN_REQUESTS,
                SIDE_TOKEN_CONCURRENCY,
                200,
                self.token_op(client.clone(), self.at.idle),
            )
            .await?;
        idle.note = "baseline for the next row".into();

        let flood_op = wrong_password_op(self.base, FLOOD_USER).await?;
        let stop = Arc::new(AtomicBool::new(false));
        eprintln!("benches/load: login flood (concurrency {FLOOD_CONCURRENCY}) started");
        let flood_db_before = runner.db_sample().await;
        let flood_cpu_before = proc_cpu(pid, runner.ticks);
        let flood = tokio::spawn(load(
            FLOOD_MAX,
            FLOOD_CONCURRENCY,
            200,
            Some(Arc::clone(&stop)),
            flood_op,
        ));
        // Let the pool fill and the queue form before measuring.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let measured = runner
            .measure(
                "`POST /token` during a `POST /login` flood",
                SIDE_TOKEN_REQUESTS,
                SIDE_TOKEN_CONCURRENCY,
                200,
                self.token_op(client, self.at.flood),
            )
            .await;
        stop.store(true, Ordering::Relaxed);
        let flood_sample = flood.await.context("the flood panicked")??;
        let flood_cpu_after = proc_cpu(pid, runner.ticks);
        let flood_db_after = runner.db_sample().await;
        let mut beside = measured?;
        // The server's CPU time during this row is mostly the flood's argon2.
        beside.server_cpu = None;
        beside.db_cpu = None;
        let flood_n = flood_sample.latencies.len();
        beside.note = format!(
            "{flood_n} sign-ins ran alongside{}",
            if flood_n >= FLOOD_MAX {
                " (flood cap reached before the end!)"
            } else {
                ""
            }
        );
        let flood = Row {
            scenario: "`POST /login` flood (the load of the previous row)".into(),
            concurrency: FLOOD_CONCURRENCY,
            server_cpu: flood_cpu_before
                .zip(flood_cpu_after)
                .map(|(b, a)| a.saturating_sub(b)),
            db_cpu: backend_cpu_between(flood_db_before.as_ref(), flood_db_after.as_ref()),
            rss_after_kib: proc_status(pid, "VmRSS"),
            sample: flood_sample,
            note: "CPU columns include the concurrent /token requests".into(),
        };
        Ok([idle, beside, flood])
    }

    /// A warm-up of `warm` requests, then the measured run of `count`, both sending `op`
    /// (which must answer 200).
    async fn warm_then_measure<F, Fut>(
        &self,
        name: &str,
        warm: usize,
        count: usize,
        concurrency: usize,
        op: F,
    ) -> Result<Row>
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome1> + Send + 'static,
    {
        let op = Arc::new(op);
        let warm_op = {
            let op = Arc::clone(&op);
            move |i| op(i)
        };
        load(warm, concurrency, 200, None, warm_op).await?;
        self.runner
            .measure(name, count, concurrency, 200, move |i| op(i))
            .await
    }

    /// `POST /token` redeeming the seeded code at `offset + i` for request `i`.
    fn token_op(
        &self,
        client: reqwest::Client,
        offset: usize,
    ) -> impl Fn(usize) -> OpFuture + Send + Sync + 'static {
        let (seeded, base) = (Arc::clone(&self.seeded), self.base.to_owned());
        move |i: usize| -> OpFuture {
            Box::pin(exchange(token_request(
                &client,
                &base,
                &seeded,
                &seeded.codes[offset + i],
            )))
        }
    }

    /// The access token of the seeded code at `index`, redeemed now.
    async fn access_token(&self, client: &reqwest::Client, index: usize) -> Result<String> {
        let code = &self.seeded.codes[index];
        let body = redeem(token_request(client, self.base, &self.seeded, code)).await?;
        json_str(&body, "access_token")
    }
}

/// `POST /token` redeeming a seeded code of the web app.
fn token_request(
    client: &reqwest::Client,
    base: &str,
    seeded: &Seeded,
    code: &str,
) -> reqwest::RequestBuilder {
    flow::code_exchange(
        client,
        base,
        CLIENT_ID,
        Some(&seeded.secret),
        code,
        REDIRECT_URI,
        &seeded.verifier,
    )
}

/// Signs `LOGIN_USER` in through the pages, in a browser of its own: a new session.
async fn sign_in(base: &str) -> Result<()> {
    let browser = flow::browser(base, BROWSER_TIMEOUT)?;
    flow::sign_in(&browser, base, LOGIN_USER, PASSWORD).await?;
    Ok(())
}

/// Posts one sign-in form of `username` with a wrong password, again and again. Failed
/// attempts do not consume the form, so every request reuses it.
async fn wrong_password_op(
    base: &str,
    username: &'static str,
) -> Result<impl Fn(usize) -> OpFuture + Send + Sync + 'static> {
    let client = flow::browser(base, BROWSER_TIMEOUT)?;
    let form = flow::login_form(&client, base).await?;
    let base = base.to_owned();
    Ok(move |_: usize| -> OpFuture {
        Box::pin(exchange(flow::login_request(
            &client,
            &base,
            &form,
            username,
            WRONG_PASSWORD,
        )))
    })
}

/// Redeems a code through `/token` and returns the response, which must be a 200.
async fn redeem(request: reqwest::RequestBuilder) -> Result<serde_json::Value> {
    let response = request.send().await?;
    if response.status() != StatusCode::OK {
        bail!(
            "redeeming a seeded code answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(response.json().await?)
}

fn json_str(body: &serde_json::Value, field: &str) -> Result<String> {
    body[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {field} in {body}"))
}

/// The refresh-token chains of the refresh scenario: each holds the newest token of one
/// family. A request takes a chain's token and puts the successor back, so no chain is
/// used by two requests at once and no token is ever presented twice (a second
/// presentation would be answered from the retry window or detected as reuse).
struct Chains(std::sync::Mutex<VecDeque<String>>);

impl Chains {
    fn take(&self) -> Option<String> {
        self.0.lock().ok()?.pop_front()
    }
    fn put(&self, token: String) {
        if let Ok(mut queue) = self.0.lock() {
            queue.push_back(token);
        }
    }
}

fn refresh_op(
    client: reqwest::Client,
    base: &str,
    secret: &str,
    chains: &Arc<Chains>,
) -> impl Fn(usize) -> OpFuture + Send + Sync + 'static {
    let (base, secret, chains) = (
        Arc::new(base.to_owned()),
        Arc::new(secret.to_owned()),
        Arc::clone(chains),
    );
    move |_| {
        let (client, base, secret, chains) = (
            client.clone(),
            Arc::clone(&base),
            Arc::clone(&secret),
            Arc::clone(&chains),
        );
        Box::pin(async move {
            let token = chains.take().ok_or("no live refresh token left")?;
            let request = flow::refresh_request(
                &client,
                &base,
                REFRESH_CLIENT_ID,
                Some(&secret),
                &token,
                &[],
            );
            let (status, body) = exchange_json(request).await?;
            if status == 200 {
                match body["refresh_token"].as_str() {
                    Some(next) if next != token => chains.put(next.to_owned()),
                    _ => return Err("200 without a new refresh token"),
                }
            }
            Ok(status)
        })
    }
}
