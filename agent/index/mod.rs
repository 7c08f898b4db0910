//! `kiln index`: the team's CI-built wheels as a package index for pip and uv.
//!
//! The save stage publishes every wheel of the run's wheelhouse into the store, one object per
//! wheel (`layout`); `kiln index serve` answers PEP 503 / PEP 691 requests over those objects
//! (`http`, `pages`), so developers and other machines install the exact wheels CI built with
//! `pip install --extra-index-url http://buildhost:PORT/simple/ …`, hash-checked.

pub mod auth;
pub mod error;
pub mod http;
pub mod layout;
pub mod metadata;
pub mod pages;

use crate::cli::index::{IndexArgs, IndexCommand, ServeArgs};
use crate::settings::StoreSettings;

pub use auth::Auth;
pub use error::IndexError;
pub use layout::{publish_wheels, PublishStats};

use crate::cache::store::Store;
use crate::settings::names;

/// `kiln index …`
fn open_store(url: Option<&str>, settings: &StoreSettings) -> Result<Store, IndexError> {
    let url =
        crate::settings::store_url(url.map(str::to_string), None, &crate::settings::process_env);
    Ok(Store::open(&url, settings)?)
}

/// Token from the file, else `KILN_INDEX_TOKEN`; basic credentials from `KILN_INDEX_BASIC_AUTH`.
fn auth_from(args: &ServeArgs) -> Result<Auth, IndexError> {
    let token = match &args.auth_token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|source| IndexError::Io {
                path: p.clone(),
                source,
            })?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(IndexError::Auth(format!(
                    "auth token file {} is empty",
                    p.display()
                )));
            }
            Some(t)
        }
        None => std::env::var(names::INDEX_TOKEN).ok(),
    };
    let basic = std::env::var(names::INDEX_BASIC_AUTH).ok();
    if let Some(b) = basic.as_deref().filter(|b| !b.is_empty()) {
        if !b.contains(':') {
            return Err(IndexError::Auth(format!(
                "{} must be user:password",
                names::INDEX_BASIC_AUTH
            )));
        }
    }
    Ok(Auth::new(token, basic))
}

/// Run `kiln index …`.
pub async fn run_cli(args: IndexArgs, settings: &StoreSettings) -> Result<(), IndexError> {
    match args.command {
        IndexCommand::Serve(a) => serve_cli(a, settings).await,
        IndexCommand::Publish(a) => {
            let store = open_store(a.store.as_deref(), settings)?;
            let stats = publish_wheels(&store, &a.wheelhouse).await?;
            println!(
                "published {} wheel(s) ({} bytes) to {}; {} already there{}",
                stats.published,
                stats.bytes_uploaded,
                store.display(),
                stats.skipped,
                if stats.invalid > 0 {
                    format!("; {} invalid file name(s) left out", stats.invalid)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
    }
}

async fn serve_cli(args: ServeArgs, settings: &StoreSettings) -> Result<(), IndexError> {
    let store = open_store(args.store.as_deref(), settings)?;
    let auth = auth_from(&args)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|source| IndexError::Bind {
            addr: args.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| IndexError::Bind {
        addr: args.listen.clone(),
        source,
    })?;
    // One line on stdout with the URL: scripts (and tests) read the port from it.
    println!(
        "kiln index: serving {} at http://{addr}/simple/",
        store.display()
    );
    if auth.is_enabled() {
        tracing::info!("index auth: required");
    } else if !addr.ip().is_loopback() {
        tracing::warn!(
            "serving {addr} without auth: anyone who can reach it can download every wheel \
             (set KILN_INDEX_TOKEN, --auth-token-file or KILN_INDEX_BASIC_AUTH)"
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    http::serve(listener, store, auth, shutdown_signal()).await
}

/// Ctrl-C or SIGTERM: finish the requests in flight, then exit 0.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("index: shutting down");
}

#[cfg(test)]
mod tests {
    use crate::settings::file::Config;

    #[test]
    fn publishing_is_on_by_default_and_can_be_turned_off() {
        let path = std::path::Path::new("kiln.yml");
        assert!(Config::default().cache.publish_wheels);
        let c = Config::parse("cache:\n  publish_wheels: false\n", path).unwrap();
        assert!(!c.cache.publish_wheels);
    }
}
