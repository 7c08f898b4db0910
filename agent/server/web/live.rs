//! The live log: a build's log file streamed as Server-Sent Events, new lines as they are
//! written, an `end` event once the job is done and the file read to its end.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::server::queue::{JobQueue, JobState};

/// How often the file is looked at for new lines.
const POLL: Duration = Duration::from_millis(250);
/// At most this much of the log per event.
const CHUNK: usize = 64 * 1024;

struct Tail {
    path: PathBuf,
    offset: u64,
    /// The end of the last read when it stopped mid-line.
    partial: Vec<u8>,
    queue: Arc<dyn JobQueue>,
    id: u64,
    ended: bool,
}

impl Tail {
    /// Complete new lines, if any (a final line without newline is kept for later).
    async fn read_lines(&mut self) -> Option<String> {
        let mut f = tokio::fs::File::open(&self.path).await.ok()?;
        f.seek(std::io::SeekFrom::Start(self.offset)).await.ok()?;
        let mut buf = vec![0u8; CHUNK];
        let n = f.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf[..n]);
        let cut = self.partial.iter().rposition(|&b| b == b'\n')?;
        let rest = self.partial.split_off(cut + 1);
        let lines = std::mem::replace(&mut self.partial, rest);
        Some(String::from_utf8_lossy(&lines[..cut]).into_owned())
    }

    async fn job_done(&self) -> bool {
        match self.queue.get(self.id).await {
            Ok(Some(j)) => j.state == JobState::Done,
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// The next event: new lines, or `end` once the job is over and the file drained.
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(lines) = self.read_lines().await {
                return Some(Event::default().data(lines));
            }
            if self.job_done().await {
                // One more look: the last lines may have landed after the read above.
                if let Some(lines) = self.read_lines().await {
                    return Some(Event::default().data(lines));
                }
                self.ended = true;
                let rest = String::from_utf8_lossy(&self.partial).into_owned();
                if !rest.is_empty() {
                    self.partial.clear();
                    self.ended = false;
                    return Some(Event::default().data(rest));
                }
                return Some(Event::default().event("end").data("done"));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `text/event-stream` of job `id`'s log at `path`.
pub fn stream(queue: Arc<dyn JobQueue>, id: u64, path: PathBuf) -> Response {
    let tail = Tail {
        path,
        offset: 0,
        partial: Vec::new(),
        queue,
        id,
        ended: false,
    };
    let events = futures::stream::unfold(tail, |mut t| async move {
        let ev = t.next().await?;
        Some((Ok::<_, Infallible>(ev), t))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
