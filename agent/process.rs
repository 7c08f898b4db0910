//! Child processes: each in its own process group, killed (the whole group) on timeout or when the
//! caller is cancelled, output streamed to our stderr and kept for error messages.
//!
//! Every child's wall time is added to a global counter so a run can report Kiln's own overhead
//! (wall time not spent waiting on children).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

static CHILD_MICROS: AtomicU64 = AtomicU64::new(0);
/// Children running now, and since when at least one has been running.
static ACTIVE: Mutex<(u32, Option<Instant>)> = Mutex::new((0, None));

/// Wall time during which at least one child process was running (children that run at the same
/// time count once), since start.
pub fn child_time() -> Duration {
    let mut micros = CHILD_MICROS.load(Ordering::Relaxed);
    if let Ok(active) = ACTIVE.lock() {
        if let (n, Some(since)) = *active {
            if n > 0 {
                micros += since.elapsed().as_micros() as u64;
            }
        }
    }
    Duration::from_micros(micros)
}

fn child_started() {
    if let Ok(mut a) = ACTIVE.lock() {
        if a.0 == 0 {
            a.1 = Some(Instant::now());
        }
        a.0 += 1;
    }
}

fn child_ended() {
    if let Ok(mut a) = ACTIVE.lock() {
        a.0 = a.0.saturating_sub(1);
        if a.0 == 0 {
            if let Some(since) = a.1.take() {
                CHILD_MICROS.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Marks a child as running for as long as it lives.
struct Running;

impl Running {
    fn start() -> Running {
        child_started();
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        child_ended();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` timed out after {}", humantime::format_duration(*.after))]
    Timeout { program: String, after: Duration },
    #[error("waiting for `{program}`: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{program}` printed more than {limit} bytes of output, the most Kiln reads of a \
         command whose output it parses; it was stopped (a cut output is never parsed)"
    )]
    OutputTooLarge { program: String, limit: usize },
}

/// The most output Kiln reads of a command whose output it parses ([`Cmd::read_whole`]): a lock
/// export, an installer's report, a probe. Far above any real project's (a 2 000-package lock
/// exports to about 1 MiB), low enough that a runaway command cannot exhaust memory.
pub const PARSED_OUTPUT_LIMIT: usize = 64 << 20;

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub env_remove: Vec<OsString>,
    /// Start from an empty environment (untrusted children: see `sandbox::env`).
    pub env_clear: bool,
    pub timeout: Option<Duration>,
    /// Echo output lines to our stderr as they arrive.
    pub echo: bool,
    /// How many trailing output lines to keep (for messages; see `whole` for parsing).
    pub keep_lines: usize,
    /// Run in the child between fork and exec (system calls only): the sandbox's Landlock
    /// confinement.
    pub pre_exec: Option<fn() -> std::io::Result<()>>,
    /// Keep every line, and stdout apart, up to this many bytes ([`Cmd::read_whole`]).
    pub whole: Option<usize>,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            env_clear: false,
            timeout: None,
            echo: false,
            keep_lines: 200,
            pre_exec: None,
            whole: None,
        }
    }

    /// `sh -c <script>`, for user-supplied command lines.
    pub fn shell(script: &str) -> Self {
        Self::new("sh").arg("-c").arg(script)
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn envs(mut self, vars: &[(OsString, OsString)]) -> Self {
        self.env.extend(vars.iter().cloned());
        self
    }

    pub fn env_remove(mut self, k: impl Into<OsString>) -> Self {
        self.env_remove.push(k.into());
        self
    }

    /// Inherit nothing from Kiln's environment: only what `env` sets reaches the child.
    pub fn env_clear(mut self) -> Self {
        self.env_clear = true;
        self
    }

    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }

    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Keep the whole output for a caller that parses it: every line in [`Output::lines`] and
    /// stdout alone in [`Output::stdout`], lines never cut, at most `limit` bytes in all. A
    /// command that prints more is stopped and its run is [`ProcessError::OutputTooLarge`]:
    /// what Kiln parses is complete or not parsed at all.
    pub fn read_whole(mut self, limit: usize) -> Self {
        self.whole = Some(limit);
        self
    }

    /// The command line as a user would type it (for logs; never contains secrets by contract:
    /// secrets travel in the environment).
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run to completion and return status + output tail. A non-zero exit is not an error here:
    /// callers decide what it means.
    pub async fn run(&self) -> Result<Output, ProcessError> {
        let program = self.program.to_string_lossy().into_owned();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(f) = self.pre_exec {
            // SAFETY: `f` makes system calls only (no allocation, no lock) in the forked child.
            unsafe { cmd.pre_exec(f) };
        }
        if self.env_clear {
            cmd.env_clear();
        }
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let _running = Running::start();
        let pid = child.id();
        let kept = Arc::new(Mutex::new(Kept::default()));
        let sink = |stdout: bool| Sink {
            kept: kept.clone(),
            echo: self.echo,
            keep: self.keep_lines,
            whole: self.whole,
            stdout,
            pid,
        };
        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(s, sink(true))));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, sink(false))));

        // Kill the whole group if we are dropped mid-wait (cancellation) or time out.
        let guard = GroupGuard { pid };
        let waited = match self.timeout {
            Some(t) => match tokio::time::timeout(t, child.wait()).await {
                Ok(r) => r,
                Err(_) => {
                    drop(guard);
                    let _ = child.wait().await;
                    return Err(ProcessError::Timeout { program, after: t });
                }
            },
            None => child.wait().await,
        };
        std::mem::forget(guard);
        let status = waited.map_err(|source| ProcessError::Wait {
            program: program.clone(),
            source,
        })?;
        // The group may hold grandchildren that keep the pipes open; don't wait forever on them.
        for h in [out, err].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
        let elapsed = started.elapsed();
        let kept = std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()));
        if let (true, Some(limit)) = (kept.over, self.whole) {
            return Err(ProcessError::OutputTooLarge { program, limit });
        }
        Ok(Output {
            code: status.code(),
            success: status.success(),
            lines: kept.lines.into(),
            stdout: kept.stdout,
            elapsed,
        })
    }
}

/// Kills a child's process group when dropped.
struct GroupGuard {
    pid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            kill_group(pid);
        }
    }
}

/// SIGKILL a process group (the child was started as its leader).
pub fn kill_group(pid: u32) {
    // SAFETY: killpg has no memory-safety preconditions; a stale pid just fails with ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, libc::SIGKILL);
    }
}

/// The longest output line kept: the rest of a longer line is dropped (a project printing
/// gigabytes without a newline must not grow Kiln).
pub const MAX_LINE: usize = 16 << 10;

/// What one run keeps of its output, shared by the stdout and stderr readers.
#[derive(Default)]
struct Kept {
    lines: VecDeque<String>,
    stdout: String,
    /// Bytes kept so far (whole mode).
    bytes: usize,
    /// The whole-output limit was passed: the command was stopped.
    over: bool,
}

/// Where one stream's lines go.
struct Sink {
    kept: Arc<Mutex<Kept>>,
    echo: bool,
    keep: usize,
    whole: Option<usize>,
    stdout: bool,
    pid: Option<u32>,
}

async fn pump<R: AsyncRead + Unpin>(r: R, sink: Sink) {
    let mut r = BufReader::new(r);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    // A parsed output's lines are never cut (the whole output is bounded instead).
    let max_line = sink.whole.map_or(MAX_LINE, |limit| limit.saturating_add(1));
    while let Ok(buf) = r.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        let room = max_line - line.len();
        cut |= chunk.len() > room;
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = newline.map_or(chunk.len(), |i| i + 1);
        r.consume(used);
        if newline.is_some() || (cut && sink.whole.is_some()) {
            sink.push_line(&line, cut);
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() || cut {
        sink.push_line(&line, cut);
    }
}

impl Sink {
    /// One output line (bytes that are not UTF-8 replaced, a cut line marked) echoed and kept:
    /// the last `keep` lines, or (whole) every line within the limit, the command stopped past
    /// it.
    fn push_line(&self, line: &[u8], cut: bool) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut text = String::from_utf8_lossy(line).into_owned();
        if cut {
            text.push_str(" [line cut]");
        }
        if self.echo {
            eprintln!("{text}");
        }
        let Ok(mut k) = self.kept.lock() else { return };
        let Some(limit) = self.whole else {
            if k.lines.len() >= self.keep {
                k.lines.pop_front();
            }
            k.lines.push_back(text);
            return;
        };
        if k.over {
            return;
        }
        k.bytes += text.len() + 1;
        if k.bytes > limit {
            k.over = true;
            if let Some(pid) = self.pid {
                kill_group(pid);
            }
            return;
        }
        if self.stdout {
            k.stdout.push_str(&text);
            k.stdout.push('\n');
        }
        k.lines.push_back(text);
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub success: bool,
    /// The last `keep_lines` lines of stdout and stderr, interleaved as they arrived; every
    /// line when the command was run with [`Cmd::read_whole`].
    pub lines: Vec<String>,
    /// The whole of stdout, one `\n` after each line, when the command was run with
    /// [`Cmd::read_whole`]; empty otherwise (a tail is never parsed).
    pub stdout: String,
    pub elapsed: Duration,
}

impl Output {
    /// The last `n` lines joined, for error messages.
    pub fn tail(&self, n: usize) -> String {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_status() {
        let out = Cmd::shell("echo one; echo two >&2; exit 3")
            .run()
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert!(!out.success);
        assert!(out.lines.contains(&"one".to_string()));
        assert!(out.lines.contains(&"two".to_string()));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The grandchild would create the marker after 2 s if it survived the group kill.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let err = Cmd::shell(&script)
            .timeout(Some(Duration::from_millis(300)))
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn a_parsed_output_is_read_whole_with_stdout_apart() {
        // 5 000 lines: the default tail keeps 200 of them; a parsed output must keep them all,
        // and stderr must not mix into what is parsed.
        let script = "echo warning >&2; seq 1 5000";
        let tail = Cmd::shell(script).run().await.unwrap();
        assert_eq!(tail.lines.len(), 200);
        assert!(
            tail.stdout.is_empty(),
            "a tail is never offered for parsing"
        );
        let whole = Cmd::shell(script)
            .read_whole(PARSED_OUTPUT_LIMIT)
            .run()
            .await
            .unwrap();
        assert_eq!(whole.lines.len(), 5001);
        let numbers: Vec<&str> = whole.stdout.lines().collect();
        assert_eq!(numbers.len(), 5000);
        assert_eq!((numbers[0], numbers[4999]), ("1", "5000"));
        // A line longer than a message line is not cut when it is parsed.
        let long = Cmd::shell("head -c 100000 /dev/zero | tr '\\0' x; echo")
            .read_whole(PARSED_OUTPUT_LIMIT)
            .run()
            .await
            .unwrap();
        assert_eq!(long.stdout.trim_end().len(), 100_000);
    }

    #[tokio::test]
    async fn output_past_the_bound_stops_the_command_with_an_error() {
        // `yes` never ends on its own: only the bound stops it.
        let started = Instant::now();
        let err = Cmd::shell("yes")
            .read_whole(1 << 20)
            .run()
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProcessError::OutputTooLarge { limit, .. } if limit == 1 << 20),
            "{err}"
        );
        assert!(err.to_string().contains("1048576 bytes"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        // One line with no newline past the bound, too.
        let err = Cmd::shell("head -c 3000000 /dev/zero")
            .read_whole(1 << 20)
            .run()
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::OutputTooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("kiln-no-such-program").run().await.unwrap_err();
        assert!(err.to_string().contains("kiln-no-such-program"));
    }

    #[tokio::test]
    async fn a_long_line_is_cut_and_bytes_that_are_not_utf8_do_not_stop_the_reader() {
        // 64 MiB without a newline, then a line of invalid UTF-8, then a last line: all read,
        // the long one kept to MAX_LINE (the old reader grew with it, and stopped at the bytes).
        let out = Cmd::shell(
            "head -c 67108864 /dev/zero | tr '\\0' x; echo; printf 'a\\377b\\n'; echo last",
        )
        .run()
        .await
        .unwrap();
        assert!(out.success);
        let n = out.lines.len();
        assert_eq!(out.lines[n - 1], "last");
        assert_eq!(out.lines[n - 2], "a\u{fffd}b");
        assert_eq!(out.lines[n - 3].len(), MAX_LINE + " [line cut]".len());
    }
}
