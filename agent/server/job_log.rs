//! A job's log, bounded: a build that prints without end (one test wrote 1.08 GB, kept for
//! the retention period) must not fill the agent's disk. The build's output passes through the
//! agent on its way to the log file; past the cap (agent.yml `job_log_max`, default 50 MiB) the
//! middle is dropped: the head stays as written (live viewers keep following it), the last part
//! is kept in memory and written at the end after one line saying how much was left out — the
//! end of a log (the failing test, the summary) is what people read.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};

/// `job_log_max` when agent.yml does not say.
pub const DEFAULT_MAX: u64 = 50 << 20;
/// The smallest cap accepted (room for a head, the truncation line and a tail).
pub const MIN_MAX: u64 = 16 << 10;
/// The most kept from the end of a truncated log.
const TAIL_MAX: u64 = 4 << 20;

/// Copy `from` to `to` until end of input, writing at most about `max` bytes; returns how many
/// bytes were left out.
pub fn copy_capped(mut from: impl Read, to: &mut impl Write, max: u64) -> std::io::Result<u64> {
    let max = max.max(MIN_MAX);
    let tail = (max / 4).min(TAIL_MAX) as usize;
    let head = max - tail as u64;
    let (mut written, mut dropped) = (0u64, 0u64);
    let mut ring: VecDeque<u8> = VecDeque::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buf[..n];
        if written < head {
            let take = (head - written).min(n as u64) as usize;
            to.write_all(&chunk[..take])?;
            written += take as u64;
            chunk = &chunk[take..];
        }
        ring.extend(chunk);
        if ring.len() > tail {
            let excess = ring.len() - tail;
            ring.drain(..excess);
            dropped += excess as u64;
        }
    }
    if dropped > 0 {
        writeln!(
            to,
            "\n=== kiln agent: log truncated: {dropped} bytes left out (job logs are capped at \
             {max} bytes: agent.yml job_log_max); the last {} bytes follow ===",
            ring.len()
        )?;
    }
    let (a, b) = ring.as_slices();
    to.write_all(a)?;
    to.write_all(b)?;
    to.flush()?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_log_passes_whole() {
        let mut out = Vec::new();
        let dropped = copy_capped(&b"hello\nworld\n"[..], &mut out, MIN_MAX).unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(out, b"hello\nworld\n");
    }

    #[test]
    fn a_long_log_keeps_head_and_tail_and_says_what_was_left_out() {
        let mut input = b"FIRST-LINE\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1 << 20));
        input.extend(b"\nLAST-LINE\n");
        let mut out = Vec::new();
        let max = 64 << 10;
        let dropped = copy_capped(&input[..], &mut out, max).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(out.len() as u64 <= max + 200, "{}", out.len());
        assert!(text.starts_with("FIRST-LINE\n"));
        assert!(text.ends_with("\nLAST-LINE\n"));
        assert!(text.contains(&format!("log truncated: {dropped} bytes left out")));
        assert_eq!(
            dropped as usize + out.len()
                - text
                    .lines()
                    .find(|l| l.contains("log truncated"))
                    .unwrap()
                    .len()
                - 2,
            input.len()
        );
    }
}
