//! Reading the files to archive on a thread of their own, ahead of the tar writer.
//!
//! Why: a save is a pipeline (walk and read → tar and digest → compress → hash and write). With
//! every stage on one thread, that thread is the slowest part of the save (thousands of
//! open/read/close calls for a ccache directory), and the compression threads wait for it. Here
//! the walk and the reads run on their own thread and hand whole files (or, for large ones,
//! pieces) to the tar writer through a bounded queue: at most [`DEPTH`] × [`PIECE`] bytes are
//! held in memory.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::SystemTime;

use super::archive::{walk_slot, ArchiveError, Item};

/// Files up to this size are sent whole; larger ones in pieces of this size.
pub const PIECE: u64 = 1 << 20;

/// Items (whole files or pieces) that may wait in the queue.
const DEPTH: usize = 32;

/// What the reader thread found, in walk order.
pub enum Source {
    Dir {
        slot: usize,
        rel: String,
        mode: u32,
    },
    /// A whole file (its bytes as read: a file that shrank is shorter than its `stat` said).
    File {
        slot: usize,
        rel: String,
        mode: u32,
        mtime: u64,
        data: Vec<u8>,
    },
    /// A file over [`PIECE`] bytes; exactly `len` bytes follow as [`Source::Piece`]s.
    Large {
        slot: usize,
        rel: String,
        mode: u32,
        mtime: u64,
        len: u64,
    },
    Piece(Vec<u8>),
    Symlink {
        slot: usize,
        rel: String,
        target: PathBuf,
    },
}

type Message = Result<Source, ArchiveError>;

/// The reader thread and its queue.
pub struct Sources {
    rx: Receiver<Message>,
    /// Buffers the tar writer is done with, back to the reader (no fresh pages per file).
    recycle: SyncSender<Vec<u8>>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl Sources {
    /// Start walking and reading `paths` (slot `i` = `paths[i]`).
    pub fn spawn(paths: &[PathBuf]) -> Sources {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle, spare) = sync_channel(DEPTH);
        let paths = paths.to_vec();
        let handle = std::thread::spawn(move || {
            let reader = Reader { tx, spare };
            reader.read_slots(&paths)
        });
        Sources {
            rx,
            recycle,
            handle: Some(handle),
        }
    }

    /// Give a buffer back for another file.
    pub fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.recycle.try_send(buf);
    }

    /// The next item, `None` once every slot is read (or the reader stopped on an error,
    /// which came as the last item).
    pub fn next(&self) -> Option<Message> {
        self.rx.recv().ok()
    }

    /// The entries the walk left out, for the user.
    pub fn finish(mut self) -> Vec<String> {
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// The reader thread's side: the queue to the tar writer and the buffers coming back.
struct Reader {
    tx: SyncSender<Message>,
    spare: Receiver<Vec<u8>>,
}

/// The tar writer is gone (it failed): stop walking.
fn gone() -> ArchiveError {
    ArchiveError::Write(io::Error::other("the archive writer stopped"))
}

impl Reader {
    /// Walk every slot, sending what is found; returns the entries left out.
    fn read_slots(&self, paths: &[PathBuf]) -> Vec<String> {
        let mut skipped = Vec::new();
        for (slot, root) in paths.iter().enumerate() {
            let walked = walk_slot(root, &mut skipped, |item| self.send_item(slot, item));
            if let Err(e) = walked {
                let _ = self.tx.send(Err(e));
                break;
            }
        }
        skipped
    }

    fn send(&self, source: Source) -> Result<(), ArchiveError> {
        self.tx.send(Ok(source)).map_err(|_| gone())
    }

    fn send_item(&self, slot: usize, item: Item) -> Result<(), ArchiveError> {
        match item {
            Item::Dir { rel, mode } => self.send(Source::Dir { slot, rel, mode }),
            Item::Symlink { rel, target } => self.send(Source::Symlink { slot, rel, target }),
            Item::File { rel, path, meta } => self.send_file(slot, rel, path, meta),
        }
    }

    /// `len` bytes (or up to the end) of `input` into a recycled buffer.
    fn read_piece(&self, input: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.reserve(len as usize);
        input.take(len).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Read one file: whole when small, else in pieces (cut at the size `stat` gave, so a file
    /// growing meanwhile still matches its tar header; one that shrank is an error).
    fn send_file(
        &self,
        slot: usize,
        rel: String,
        path: PathBuf,
        meta: fs::Metadata,
    ) -> Result<(), ArchiveError> {
        let read_err = |e: io::Error| ArchiveError::ReadSource {
            path: path.clone(),
            source: e,
        };
        let mut input = fs::File::open(&path).map_err(read_err)?;
        let (mode, mtime) = (meta.permissions().mode() & 0o7777, mtime_secs(&meta));
        let len = meta.len();
        if len <= PIECE {
            // `take` reads without asking the size again (the file's own hint costs a stat).
            let data = self.read_piece(&mut input, len).map_err(read_err)?;
            return self.send(Source::File {
                slot,
                rel,
                mode,
                mtime,
                data,
            });
        }
        self.send(Source::Large {
            slot,
            rel,
            mode,
            mtime,
            len,
        })?;
        let mut sent = 0u64;
        while sent < len {
            let piece = self
                .read_piece(&mut input, PIECE.min(len - sent))
                .map_err(read_err)?;
            if piece.is_empty() {
                let shrank = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being archived",
                );
                return Err(read_err(shrank));
            }
            sent += piece.len() as u64;
            self.send(Source::Piece(piece))?;
        }
        Ok(())
    }
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
