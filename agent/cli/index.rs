//! `kiln index` flags (the commands are in `index`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::settings::names;

#[derive(Args, Debug)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub command: IndexCommand,
}

#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// Serve the wheels published in a store as a read-only package index (PEP 503 + PEP 691).
    ///
    /// Auth (optional): a bearer token from --auth-token-file or KILN_INDEX_TOKEN (pip/uv send it
    /// as the password of the index URL: http://__token__:TOKEN@host/simple/), and/or basic
    /// credentials `user:password` from KILN_INDEX_BASIC_AUTH.
    Serve(ServeArgs),
    /// Publish the wheels of a directory into a store (what `kiln run`'s save stage does).
    Publish(PublishArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Store URL to serve (default: KILN_STORE, else `gha` under GitHub Actions, else the
    /// embedded file store).
    #[arg(long)]
    pub store: Option<String>,
    /// Address to listen on; port 0 picks a free port (the URL is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8700", env = names::INDEX_LISTEN)]
    pub listen: String,
    /// File holding the bearer token clients must present (trailing newline ignored).
    #[arg(long)]
    pub auth_token_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Directory of wheels (e.g. a run's work dir `wheelhouse/`).
    pub wheelhouse: PathBuf,
    /// Store URL to publish into (default: KILN_STORE, else `gha` under GitHub Actions, else
    /// the embedded file store).
    #[arg(long)]
    pub store: Option<String>,
}
