//! A command-line app that signs in to Portcullis the way a mobile or desktop app does:
//! loopback redirect on an ephemeral port (RFC 8252 §7.3), PKCE, code exchange, UserInfo,
//! one refresh (the refresh token rotates) and revocation on sign-out (RFC 7009).
//!
//! ```sh
//! cargo run --example native -- --issuer http://127.0.0.1:8080 --client-id acme-cli
//! ```

#[path = "flow.rs"]
mod flow;

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use url::Url;

use flow::{NativeApp, Session};

/// Sign in to an OpenID Connect provider as a native app, then sign out.
#[derive(Parser)]
struct Args {
    /// The provider's issuer URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    issuer: String,
    /// The client_id the app is registered with (a public client, no secret).
    #[arg(long, default_value = "acme-cli")]
    client_id: String,
    /// The scope to ask for (`openid` is always included).
    #[arg(long, default_value = flow::DEFAULT_SCOPE)]
    scope: String,
    /// Seconds to wait for the browser to come back.
    #[arg(long, default_value_t = flow::DEFAULT_CALLBACK_TIMEOUT.as_secs())]
    timeout: u64,
    /// Print the URL only; do not try to open a browser.
    #[arg(long)]
    no_browser: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!("discovering {}", args.issuer);
    let app = NativeApp::discover(&args.issuer, &args.client_id)
        .await?
        .with_scope(&args.scope)
        .with_callback_timeout(Duration::from_secs(args.timeout));
    let m = app.metadata();
    println!("  authorization  {}", m.authorization_endpoint);
    println!("  token          {}", m.token_endpoint);
    println!("  userinfo       {}", m.userinfo_endpoint);
    if let Some(revocation) = &m.revocation_endpoint {
        println!("  revocation     {revocation}");
    }

    let no_browser = args.no_browser;
    let session = app
        .login(|url| {
            println!("\nsign in in your browser; if it does not open, visit:\n\n  {url}\n");
            if let Some(redirect) = url
                .query_pairs()
                .find(|(k, _)| k == "redirect_uri")
                .map(|(_, v)| v.into_owned())
            {
                println!("waiting for the browser at {redirect}");
            }
            if !no_browser {
                open_browser(url);
            }
        })
        .await?;
    println!("\nsigned in");
    describe(&session);

    let info = app.userinfo(&session).await?;
    println!("\nuserinfo");
    println!("  sub                {}", info.sub);
    for (name, value) in [
        ("preferred_username", info.preferred_username.as_deref()),
        ("name", info.name.as_deref()),
        ("email", info.email.as_deref()),
    ] {
        if let Some(value) = value {
            println!("  {name:<18} {value}");
        }
    }
    if let Some(verified) = info.email_verified {
        println!("  email_verified     {verified}");
    }

    let session = if session.refresh_token.is_some() {
        println!("\nrefreshing");
        let refreshed = app.refresh(&session).await?;
        let rotated = match (&session.refresh_token, &refreshed.refresh_token) {
            (Some(old), Some(new)) => old.secret() != new.secret(),
            _ => false,
        };
        describe(&refreshed);
        println!(
            "  the refresh token {}",
            if rotated {
                "rotated: the old one is spent (a second use after the retry window revokes the grant)"
            } else {
                "did not rotate"
            }
        );
        // RFC 6749 §6: the old refresh token is discarded.
        refreshed
    } else {
        println!("\nno refresh token: nothing to refresh");
        session
    };

    println!("\nsigning out");
    let had_refresh_token = session.refresh_token.is_some();
    app.revoke(session).await?;
    if had_refresh_token {
        println!("  refresh token revoked (RFC 7009); its access tokens are revoked with it");
    } else {
        println!("  access token revoked (RFC 7009)");
    }
    Ok(())
}

/// What a session holds, with every token cut to a short prefix.
fn describe(session: &Session) {
    println!("  subject        {}", session.id.sub);
    if let Some(username) = &session.id.preferred_username {
        println!("  username       {username}");
    }
    if let Some(auth_time) = session.id.auth_time {
        println!("  auth_time      {auth_time}");
    }
    println!("  scope          {}", session.scope);
    let expires = session
        .expires_in
        .map(|d| format!(" (expires in {} s)", d.as_secs()))
        .unwrap_or_default();
    println!(
        "  access token   {}{expires}",
        redact(session.access_token.secret())
    );
    match &session.refresh_token {
        Some(token) => println!("  refresh token  {}", redact(token.secret())),
        None => {
            println!("  refresh token  (none: register the client with the refresh_token grant)")
        }
    }
}

/// A short prefix of a secret, for display: tokens are never printed whole.
fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(8).collect();
    format!("{head}…")
}

/// Hands the URL to the system browser (RFC 8252 §6: an external user-agent, never an
/// embedded one). Failures are ignored: the URL is printed anyway.
fn open_browser(url: &Url) {
    let url = url.as_str();
    let mut command = if cfg!(target_os = "macos") {
        let mut c = Command::new("open");
        c.arg(url);
        c
    } else if cfg!(target_os = "windows") {
        // `start` would need cmd.exe quoting for the `&`s of the query.
        let mut c = Command::new("rundll32");
        c.args(["url.dll,FileProtocolHandler", url]);
        c
    } else {
        let mut c = Command::new("xdg-open");
        c.arg(url);
        c
    };
    let _ = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
