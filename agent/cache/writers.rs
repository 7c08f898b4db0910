//! A small pool of threads that create and write extracted files.
//!
//! Why: on restore, creating thousands of small files (ccache objects, wheel metadata) is
//! kernel-bound work (inode allocation, page cache) that a single `tar x` does one file at a
//! time. The tar parser stays single-threaded (it owns every safety decision and every
//! directory); it only hands finished `(path, bytes)` jobs to these writers. Large files are
//! written by the parser itself, so memory stays bounded (queue depth × small-file limit).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// One file to write.
pub struct FileJob {
    pub dest: PathBuf,
    pub mode: u32,
    pub mtime: Option<u64>,
    pub data: Vec<u8>,
}

/// Write `data` to a new file at `dest` with `mode`, then set its modification time.
pub fn write_file(dest: &PathBuf, mode: u32, mtime: Option<u64>, data: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(dest)?;
    file.write_all(data)?;
    if let Some(m) = mtime {
        let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(m));
    }
    Ok(())
}

#[derive(Default)]
struct Shared {
    pending: Mutex<usize>,
    idle: Condvar,
    error: Mutex<Option<(PathBuf, io::Error)>>,
}

pub struct WriterPool {
    tx: Option<SyncSender<FileJob>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl WriterPool {
    /// `threads` writers and a queue of `depth` jobs; with no threads, no pool at all: the
    /// caller writes every file itself ([`WriterPool::is_inline`]), and a submitted job is
    /// refused.
    pub fn new(threads: usize, depth: usize) -> WriterPool {
        if threads == 0 {
            return WriterPool {
                tx: None,
                threads: Vec::new(),
                shared: Arc::new(Shared::default()),
            };
        }
        let (tx, rx) = sync_channel::<FileJob>(depth);
        let rx: Arc<Mutex<Receiver<FileJob>>> = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared::default());
        let threads = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                let shared = shared.clone();
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if let Err(e) = write_file(&job.dest, job.mode, job.mtime, &job.data) {
                        if let Ok(mut slot) = shared.error.lock() {
                            slot.get_or_insert((job.dest.clone(), e));
                        }
                    }
                    if let Ok(mut p) = shared.pending.lock() {
                        *p -= 1;
                        if *p == 0 {
                            shared.idle.notify_all();
                        }
                    }
                })
            })
            .collect();
        WriterPool {
            tx: Some(tx),
            threads,
            shared,
        }
    }

    /// Whether jobs are written by the caller (no threads).
    pub fn is_inline(&self) -> bool {
        self.threads.is_empty()
    }

    fn take_error(&self) -> Option<(PathBuf, io::Error)> {
        self.shared.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Queue a job (blocks while the queue is full). Returns an earlier job's failure, if any.
    pub fn submit(&self, job: FileJob) -> Result<(), (PathBuf, io::Error)> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        if let Ok(mut p) = self.shared.pending.lock() {
            *p += 1;
        }
        let dest = job.dest.clone();
        match &self.tx {
            Some(tx) => tx
                .send(job)
                .map_err(|_| (dest, io::Error::other("file writer threads stopped"))),
            None => Err((dest, io::Error::other("file writer pool closed"))),
        }
    }

    /// Wait until every queued job is written (before a hard link to one of them).
    pub fn flush(&self) -> Result<(), (PathBuf, io::Error)> {
        if let Ok(mut p) = self.shared.pending.lock() {
            while *p > 0 {
                p = match self.shared.idle.wait(p) {
                    Ok(p) => p,
                    Err(_) => break,
                };
            }
        }
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Write everything queued and stop the threads.
    pub fn finish(mut self) -> Result<(), (PathBuf, io::Error)> {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for WriterPool {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
