//! Finding and killing every process of a build, even ones that left its process group.
//!
//! `kiln run` starts the test command in a process group of its own, so killing the build's group
//! is not enough; and after `kill -9` of the agent the build's processes are orphans that nothing
//! tracks. Each build is therefore started with `KILN_AGENT_JOB=<agent id>/<job id>` in its
//! environment, which every descendant inherits; killing a build means SIGKILL to its group and
//! to every process whose environment carries that marker. The agent id (random, kept in the data
//! dir) keeps two agents on one machine from killing each other's builds.

use std::path::Path;

use crate::settings::names;

/// Environment variable that marks a build's processes.
pub const MARKER_VAR: &str = names::AGENT_JOB;

/// The marker value for `job` of the agent `agent_id`.
pub fn marker(agent_id: &str, job: u64) -> String {
    format!("{agent_id}/{job}")
}

/// Read or create `<data-dir>/agent-id`.
pub fn agent_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("agent-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 8];
    let f = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut &f, &mut bytes)?;
    let id = hex::encode(bytes);
    super::queue::embedded::write_durably(data_dir, &path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// PIDs of live processes whose environment holds `MARKER_VAR=marker`.
pub fn find_marked(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={marker}");
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// SIGKILL the process group `pgid` (if any) and every process carrying `marker`. Repeated a few
/// times because a process can fork between the scan and the kill.
pub fn kill_build(pgid: Option<u32>, marker: &str) -> usize {
    let mut killed = 0;
    for _ in 0..3 {
        if let Some(g) = pgid {
            crate::process::kill_group(g);
        }
        let pids = find_marked(marker);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; a gone pid fails with ESRCH.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            killed += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn agent_id_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent_id(dir.path()).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(agent_id(dir.path()).unwrap(), a);
    }

    #[tokio::test]
    async fn kills_marked_processes_outside_the_group() {
        let m = marker("test", std::process::id() as u64);
        // The grandchild moves to its own process group (like kiln run's test command does).
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg("setsid sleep 30 & sleep 30")
            .env(MARKER_VAR, &m)
            .process_group(0)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pgid = child.id();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(find_marked(&m).len() >= 2, "{:?}", find_marked(&m));
        kill_build(pgid, &m);
        let _ = child.wait().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Zombies of reaped children vanish; the setsid'd sleep was reparented and killed.
        let left: Vec<u32> = find_marked(&m)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| !s.contains(") Z "))
                    .unwrap_or(false)
            })
            .collect();
        assert!(left.is_empty(), "survivors: {left:?}");
    }
}
