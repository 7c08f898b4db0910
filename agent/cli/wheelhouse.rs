//! `kiln wheelhouse` flags (the commands are in `wheelhouse`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct WheelhouseArgs {
    #[command(subcommand)]
    pub command: WheelhouseCommand,
}

#[derive(Subcommand, Debug)]
pub enum WheelhouseCommand {
    /// Pack wheels into one archive (tar + zstd, with a manifest of names, tags and sha256).
    Export(ExportArgs),
    /// Verify an archive made by `export` and put its wheels into a directory.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Archive to write (conventionally `*.tar.zst`).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Export the wheels of this directory (e.g. a run's work dir `wheelhouse/`).
    #[arg(long, conflicts_with = "store")]
    pub from: Option<PathBuf>,
    /// Export the wheels published in this store (default when --from is absent: KILN_STORE,
    /// else `gha` under GitHub Actions, else the embedded file store).
    #[arg(long)]
    pub store: Option<String>,
    /// Only wheels for this platform tag (repeatable), e.g. manylinux_2_17_x86_64 or
    /// linux_x86_64; pure-Python (`any`) wheels are always included.
    #[arg(long = "platform")]
    pub platforms: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Archive made by `kiln wheelhouse export`.
    pub archive: PathBuf,
    /// Directory to put the wheels in (default: where `kiln run --offline` looks,
    /// ~/.cache/kiln/wheelhouse or KILN_OFFLINE_WHEELHOUSE).
    #[arg(long)]
    pub into: Option<PathBuf>,
}
