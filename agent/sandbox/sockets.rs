//! The host's unix sockets, kept away from the project's code.
//!
//! A read-only bind of `/` does not stop `connect()` to a socket file (a read-only mount only
//! refuses writes to regular files, directories and links), and `--unshare-net` does not help
//! path sockets at all: any daemon listening on a path (`/run/*.sock`, a PostgreSQL socket dir,
//! Docker) would be reachable. So every path socket the host has bound is covered with
//! `/dev/null` in the sandbox: those the kernel lists in `/proc/net/unix` (every socket bound in
//! the host's network namespace, wherever its file lives) and those found under `/run`.
//!
//! Abstract sockets (`@name`) have no file and belong to a network namespace: steps without
//! network (`--unshare-net`) have their own and see none of the host's. Steps with network share
//! the host's namespace, so there Kiln confines the sandbox with a Landlock scope (Linux 6.12,
//! Landlock ABI 6: `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET`): its processes may connect only to
//! abstract sockets created inside the sandbox. On older kernels that part is not possible and
//! the run says so once (docs/security.md).
//!
//! The operator may keep a socket reachable (`--sandbox-socket`, `KILN_SANDBOX_SOCKETS`,
//! agent.yml `sandbox_sockets:`): a path stays uncovered; an abstract name (`@name`) turns the
//! Landlock scope off for the run, because a scope cannot make exceptions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `/proc/net/unix` is a few hundred bytes per socket: a host with 100 000 sockets stays under.
const PROC_NET_UNIX_MAX: u64 = 16 << 20;
/// Directories where daemons put their sockets; scanned (depth- and size-bounded) besides
/// `/proc/net/unix` for sockets bound in another network namespace.
const SOCKET_DIRS: &[&str] = &["/run", "/var/run", "/var/spool/postfix"];
const SCAN_DEPTH: usize = 6;
const SCAN_MAX_ENTRIES: usize = 20_000;

/// Every host path socket that exists now: from `/proc/net/unix` and a bounded scan of the
/// usual socket directories. Sorted, without duplicates; each is a socket file right now.
pub(super) fn host_path_sockets() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = listed_in_proc_net_unix()
        .into_iter()
        .filter(|p| is_socket(p))
        .collect();
    let mut budget = SCAN_MAX_ENTRIES;
    for dir in SOCKET_DIRS {
        scan(Path::new(dir), SCAN_DEPTH, &mut budget, &mut found);
    }
    found.sort();
    found.dedup();
    found
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// The paths of the bound path sockets the kernel lists for this network namespace.
fn listed_in_proc_net_unix() -> Vec<PathBuf> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open("/proc/net/unix")
        .and_then(|f| f.take(PROC_NET_UNIX_MAX).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    parse_proc_net_unix(&text)
}

/// `Num RefCount Protocol Flags Type St Inode Path`: the path is the 8th field and may hold
/// spaces; abstract names start with `@`, unbound sockets have none.
fn parse_proc_net_unix(text: &str) -> Vec<PathBuf> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut rest = line.trim_start();
            for _ in 0..7 {
                let end = rest.find(char::is_whitespace)?;
                rest = rest[end..].trim_start();
            }
            rest.starts_with('/').then(|| PathBuf::from(rest))
        })
        .collect()
}

/// Socket files under `dir`, without following links, within `depth` levels and `budget`
/// entries in all.
fn scan(dir: &Path, depth: usize, budget: &mut usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(t) = e.file_type() else { continue };
        use std::os::unix::fs::FileTypeExt;
        if t.is_socket() {
            out.push(e.path());
        } else if t.is_dir() && depth > 1 {
            scan(&e.path(), depth - 1, budget, out);
        }
    }
}

/// Landlock's `landlock_ruleset_attr` (ABI 6: file system, network, scopes).
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

const CREATE_RULESET_VERSION: libc::c_uint = 1;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
/// The first Landlock ABI with scopes.
const ABI_WITH_SCOPES: libc::c_long = 6;

/// Can this kernel confine abstract unix sockets (Landlock ABI 6), and can the sandbox start
/// so confined (a set-uid bubblewrap run by another user than root cannot: Landlock needs
/// `no_new_privs`, which a set-uid program does not survive)?
pub(super) fn abstract_scope_available(bwrap: &Path) -> bool {
    static ABI: OnceLock<libc::c_long> = OnceLock::new();
    // SAFETY: asks for the ABI version; no pointer is read.
    let abi = *ABI.get_or_init(|| unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    });
    if abi < ABI_WITH_SCOPES {
        return false;
    }
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setuid = std::fs::metadata(bwrap).is_ok_and(|m| m.permissions().mode() & 0o4000 != 0);
    root || !setuid
}

/// Run in the sandbox's first process before it executes bubblewrap (`pre_exec`: only system
/// calls, nothing that allocates): from here on, it and everything it starts may connect only
/// to abstract unix sockets created inside. Sockets the project creates still work.
pub(crate) fn confine_abstract_sockets() -> std::io::Result<()> {
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped: SCOPE_ABSTRACT_UNIX_SOCKET,
    };
    // SAFETY: `attr` outlives the call and its size is passed; the returned fd is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain prctl/syscall/close on our own fd.
    let restricted = unsafe {
        if libc::geteuid() != 0 && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            -1
        } else {
            libc::syscall(
                libc::SYS_landlock_restrict_self,
                fd as libc::c_int,
                0 as libc::c_uint,
            )
        }
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours and used no more.
    unsafe { libc::close(fd as libc::c_int) };
    if restricted != 0 {
        return Err(err);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_unix_paths_with_spaces_not_abstract_nor_unbound() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 269841 /run/a b.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 269842 @/tmp/.X11-unix/X0\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 269843\n\
            0000000000000000: 00000002 00000000 00010000 0005 01 269844 /var/run/pg/.s.PGSQL.5432\n";
        assert_eq!(
            parse_proc_net_unix(text),
            [
                PathBuf::from("/run/a b.sock"),
                PathBuf::from("/var/run/pg/.s.PGSQL.5432")
            ]
        );
    }

    #[test]
    fn a_socket_bound_anywhere_is_found() {
        let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).unwrap();
        let path = dir.path().join("daemon.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let found = host_path_sockets();
        assert!(found.contains(&path), "{path:?} not in {found:?}");
    }
}
