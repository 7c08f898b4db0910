//! What the sandbox shows the project's code: bubblewrap's mount table and namespace flags for
//! one run, derived from the work dir, `$HOME` and the paths Kiln was told to hide or expose.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Network;

/// Host paths that hold secrets on many machines; hidden whenever they exist.
const HOST_SECRETS: &[&str] = &[
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/run/secrets",
    "/run/docker.sock",
    "/run/containerd",
    "/run/podman",
    "/var/lib/kiln",
    "/etc/kiln",
];

/// Scratch dirs every sandbox gets empty and private.
const PRIVATE_TMP: &[&str] = &["/tmp", "/var/tmp"];

/// The mounts of one run's sandbox. Paths are stored canonical (bubblewrap mounts on the real
/// path; a symlinked work dir must not be mounted twice or not at all).
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The work dir, and a checkout built in place (`checkout: reuse`) when it lies outside.
    writable: Vec<PathBuf>,
    home: Option<PathBuf>,
    hidden: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    /// Read-only although inside a writable place: the checkout's git dir, which Kiln's own git
    /// commands read after the project's code ran.
    protected: Vec<PathBuf>,
    /// Host sockets the operator keeps reachable (canonical paths).
    allowed_sockets: Vec<PathBuf>,
    /// The operator listed an abstract socket: no Landlock scope for this run.
    allow_abstract: bool,
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

impl Layout {
    /// A layout whose only writable place is `work_dir`, with `home` (the children's `$HOME`)
    /// an empty tmpfs and the usual host secrets hidden.
    pub fn new(work_dir: &Path, home: Option<&Path>) -> Layout {
        let mut layout = Layout {
            writable: vec![canonical(work_dir).unwrap_or_else(|| work_dir.to_path_buf())],
            home: home
                .filter(|h| h.is_absolute() && *h != Path::new("/"))
                .and_then(canonical),
            ..Layout::default()
        };
        for p in HOST_SECRETS {
            layout.hide(Path::new(p));
        }
        if let Ok(rd) = std::fs::read_dir("/etc/ssh") {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("ssh_host_") && !name.ends_with(".pub") {
                    layout.hide(&e.path());
                }
            }
        }
        layout
    }

    /// Hide `path`: a directory becomes an empty read-only tmpfs, a file `/dev/null` (unreadable
    /// on the sandbox's `nodev` mount). A path that does not exist has nothing to hide.
    pub fn hide(&mut self, path: &Path) {
        if let Some(p) = canonical(path) {
            if p != Path::new("/") && !self.hidden.contains(&p) {
                self.hidden.push(p);
            }
        }
    }

    /// Show `path` read-only even under a hidden directory. Refused when it would uncover a
    /// hidden path, `$HOME` or the private scratch dirs.
    pub fn expose(&mut self, path: &Path) -> Result<(), String> {
        let Some(p) = canonical(path) else {
            return Err(format!("{} does not exist", path.display()));
        };
        let covered = self
            .hidden
            .iter()
            .chain(&self.home)
            .map(PathBuf::as_path)
            .chain(PRIVATE_TMP.iter().map(Path::new))
            .find(|h| h.starts_with(&p));
        if let Some(h) = covered {
            return Err(format!(
                "showing {} would uncover {}, which stays hidden",
                p.display(),
                h.display()
            ));
        }
        if !self.read_only.contains(&p) {
            self.read_only.push(p);
        }
        Ok(())
    }

    /// Keep a host socket reachable: a path, or `@name` for an abstract socket (which keeps
    /// every abstract socket of the host reachable from steps with network: a Landlock scope
    /// has no exceptions).
    pub fn allow_socket(&mut self, socket: &str) {
        if socket.starts_with('@') {
            self.allow_abstract = true;
        } else if let Some(p) = canonical(Path::new(socket)) {
            if !self.allowed_sockets.contains(&p) {
                self.allowed_sockets.push(p);
            }
        }
    }

    pub fn allows_abstract_sockets(&self) -> bool {
        self.allow_abstract
    }

    /// Cover every host path socket with `/dev/null` (connecting then fails), but those the
    /// operator allowed, those under the work dir (the build's own) and those already out of
    /// sight under a hidden or private directory.
    fn socket_args(&self, roots: &[&Path], args: &mut Vec<OsString>) {
        for s in super::sockets::host_path_sockets() {
            let Some(s) = canonical(&s) else { continue };
            let covered = roots
                .iter()
                .copied()
                .chain(self.hidden.iter().map(PathBuf::as_path))
                .chain([Path::new("/dev"), Path::new("/proc")])
                .any(|r| s.starts_with(r));
            if covered || self.under_work(&s) || self.allowed_sockets.contains(&s) {
                continue;
            }
            args.extend(["--ro-bind".into(), "/dev/null".into(), s.into()]);
        }
    }

    /// Whether the project's code sees `path` as the host has it: inside a writable or exposed
    /// place, or outside every hidden and private directory. A path that does not exist is
    /// seen as it is (nothing).
    pub fn shows(&self, path: &Path) -> bool {
        let Some(p) = canonical(path) else {
            return true;
        };
        if self.under_work(&p) || self.read_only.iter().any(|r| p.starts_with(r)) {
            return true;
        }
        !self
            .masked_roots()
            .into_iter()
            .chain(self.hidden.iter().map(PathBuf::as_path))
            .any(|h| p.starts_with(h))
    }

    /// Also writable: a checkout the run builds in place, outside the work dir.
    pub fn writable(&mut self, path: &Path) {
        if let Some(p) = canonical(path) {
            if p != Path::new("/") && !self.writable.iter().any(|w| p.starts_with(w)) {
                self.writable.push(p);
            }
        }
    }

    /// Show `path`, inside a writable place, read-only: the project's code can read it but
    /// neither change it nor (a mount point) rename it away.
    pub fn protect(&mut self, path: &Path) {
        if let Some(p) = canonical(path) {
            if p != Path::new("/") && !self.protected.contains(&p) {
                self.protected.push(p);
            }
        }
    }

    fn under_work(&self, p: &Path) -> bool {
        self.writable.iter().any(|w| p.starts_with(w))
    }

    /// Directories mounted empty before the hidden paths (a hidden path under one of them is
    /// already out of sight).
    fn masked_roots(&self) -> Vec<&Path> {
        PRIVATE_TMP
            .iter()
            .map(Path::new)
            .filter(|p| p.is_dir())
            .chain(self.home.as_deref())
            .collect()
    }

    fn hide_args(&self, p: &Path, args: &mut Vec<OsString>) {
        if p.is_dir() {
            args.extend(["--tmpfs".into(), p.into()]);
        } else {
            args.extend(["--ro-bind".into(), "/dev/null".into(), p.into()]);
        }
    }

    /// bubblewrap's arguments up to (not including) `--`.
    pub(super) fn bwrap_args(&self, network: Network, cwd: Option<&Path>) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
            .map(OsString::from)
            .to_vec();
        let roots = self.masked_roots();
        for r in &roots {
            args.extend(["--tmpfs".into(), r.into()]);
        }
        let (inside_work, outside_work): (Vec<&PathBuf>, Vec<&PathBuf>) =
            self.hidden.iter().partition(|p| self.under_work(p));
        let mut masked_dirs = Vec::new();
        for p in outside_work {
            let already = roots.iter().any(|r| p.starts_with(r))
                || self.hidden.iter().any(|h| h != p && p.starts_with(h));
            if !already {
                self.hide_args(p, &mut args);
                masked_dirs.extend(p.is_dir().then_some(p));
            }
        }
        for p in &self.read_only {
            args.extend(["--ro-bind".into(), p.into(), p.into()]);
        }
        self.socket_args(&roots, &mut args);
        for w in &self.writable {
            args.extend(["--bind".into(), w.into(), w.into()]);
        }
        for p in &self.protected {
            args.extend(["--ro-bind".into(), p.into(), p.into()]);
        }
        for p in inside_work {
            self.hide_args(p, &mut args);
            masked_dirs.extend(p.is_dir().then_some(p));
        }
        // Empty and read-only: nothing written "into" a hidden store can pass for its contents.
        for p in masked_dirs {
            args.extend(["--remount-ro".into(), p.into()]);
        }
        args.extend(namespace_flags(network).into_iter().map(OsString::from));
        if let Some(dir) = cwd {
            // Inside, a relative directory would be relative to the new root.
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            args.extend(["--chdir".into(), dir.into()]);
        }
        args
    }
}

/// New PID, IPC, UTS (and, when denied, network) namespaces; no capabilities even as root; a
/// new session (no terminal injection); killed when Kiln dies. With its own PID namespace, the
/// sandbox's init takes every remaining process down when the command exits.
pub(super) fn namespace_flags(network: Network) -> Vec<&'static str> {
    let mut flags = vec![
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--new-session",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
    ];
    if network == Network::Denied {
        flags.push("--unshare-net");
    }
    flags
}
