//! Transfer progress: a bar when a person is watching (stderr is a TTY), otherwise one log line
//! at the end with bytes and MB/s, which is what a CI log reader wants.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// One transfer (download, upload, compress, extract).
#[derive(Clone)]
pub struct Transfer {
    bar: Option<ProgressBar>,
    start: Instant,
    what: &'static str,
    label: String,
}

impl Transfer {
    /// `what`: "download", "upload", "archive"; `label`: the key; `bar`: a progress bar when
    /// stderr is a terminal (`TransferSettings::progress`).
    pub fn new(what: &'static str, label: &str, total: Option<u64>, bar: bool) -> Transfer {
        let bar = if bar && std::io::stderr().is_terminal() {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::no_length(),
            };
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(format!("{what} {label}"));
            Some(bar)
        } else {
            None
        };
        Transfer {
            bar,
            start: Instant::now(),
            what,
            label: label.to_string(),
        }
    }

    pub fn set(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }

    /// Close the bar and log the rate.
    pub fn finish(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.start.elapsed().as_secs_f64();
        let mbps = if secs > 0.0 {
            bytes as f64 / 1e6 / secs
        } else {
            0.0
        };
        tracing::info!(
            key = %self.label,
            bytes,
            seconds = format!("{secs:.2}"),
            mb_per_s = format!("{mbps:.1}"),
            "cache {} {}: {} in {secs:.2}s ({mbps:.1} MB/s)",
            self.what,
            self.label,
            human_bytes(bytes),
        );
    }

    /// Close the bar without a rate (the transfer failed).
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
