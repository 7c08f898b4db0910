//! A real PostgreSQL server for the tests: one unprivileged cluster in a temp dir per test
//! binary (Debian's `postgresql` package: initdb + pg_ctl from /usr/lib/postgresql/*/bin),
//! listening on loopback, stopped when the binary exits. Each test gets a database of its own.
//!
//! PostgreSQL refuses to run as root, so under root the cluster belongs to `nobody`
//! (`runuser -u nobody`); as any other user it is that user's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static STOP: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/setup.sh installs Debian's postgresql)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect("no /usr/lib/postgresql/*/bin/pg_ctl")
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `program args…`, as `nobody` when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

extern "C" fn stop_cluster() {
    if let Some((bin, dir)) = STOP.lock().ok().and_then(|g| g.clone()) {
        let mut c = as_owner(&bin.join("pg_ctl"));
        c.arg("-D").arg(&dir).args(["-m", "immediate", "stop"]);
        let _ = c.output();
        let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
    }
}

fn start() -> Cluster {
    let bin = bin_dir();
    let root = tempfile::Builder::new()
        .prefix("kiln-pg-")
        .tempdir()
        .unwrap()
        .keep();
    if is_root() {
        let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
        let uid: u32 = String::from_utf8_lossy(&nobody.stdout)
            .trim()
            .parse()
            .unwrap();
        std::os::unix::fs::chown(&root, Some(uid), None).unwrap();
    }
    let dir = root.join("data");
    let mut init = as_owner(&bin.join("initdb"));
    init.arg("-D").arg(&dir).args([
        "-A",
        "trust",
        "-U",
        "kiln",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(init, "initdb");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let opts = format!(
        "-h 127.0.0.1 -p {port} -k {} -F -c max_connections=300 -c shared_buffers=32MB",
        root.display()
    );
    let mut ctl = as_owner(&bin.join("pg_ctl"));
    ctl.arg("-D")
        .arg(&dir)
        .args(["-w", "-t", "60", "-l"])
        .arg(root.join("server.log"))
        .args(["-o", &opts, "start"]);
    *STOP.lock().unwrap() = Some((bin.clone(), dir.clone()));
    unsafe {
        libc::atexit(stop_cluster);
    }
    run(ctl, "pg_ctl start");
    Cluster { port, dir, bin }
}

impl Cluster {
    /// The binary's cluster, started on first use.
    pub fn get() -> &'static Cluster {
        CLUSTER.get_or_init(start)
    }

    /// A new empty database; its URL.
    pub fn database(&self, tag: &str) -> String {
        let name = format!(
            "kiln_{tag}_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let mut c = Command::new(self.bin.join("createdb"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "kiln",
            &name,
        ]);
        run(c, "createdb");
        format!("postgres://kiln@127.0.0.1:{}/{name}", self.port)
    }

    /// The database's URL through the server's unix socket (peer of `database`'s TCP URL).
    pub fn socket_url(&self, tcp_url: &str) -> String {
        let name = tcp_url.rsplit('/').next().unwrap_or_default();
        let dir = self.dir.parent().unwrap().display().to_string();
        format!(
            "postgres://kiln@localhost/{name}?host={dir}&port={}",
            self.port
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.parent().unwrap().join("server.log")).unwrap_or_default()
    }
}
