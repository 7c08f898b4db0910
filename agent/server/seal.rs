//! Job seals: a job's trust comes from the signed webhook, never from a queue row alone.
//!
//! Whoever can write the queue (the fleet's PostgreSQL, the data dir) could otherwise insert a
//! row with `fork = false` on `main` naming a fork's commit, and an agent would build it as
//! trusted: network, cache saves, the repository's token. So the agent seals every job it
//! queues — an HMAC over what decides its trust (repository, commit, branch, lane, event, pull
//! request, fork) under a key derived from the webhook secret, which the sandbox never sees —
//! and a worker builds only jobs whose seal checks out. A retry or a check run's "Re-run"
//! carries the original job's seal: re-queuing never vouches for a row that was not sealed.
//!
//! Agents of one fleet share the webhook secret, so any of them checks any job. A poll-only
//! agent (no webhook secret) keeps a random key in its data dir.

use std::path::Path;

use super::events::BuildRequest;
use super::queue::Job;
use super::signature::Secret;

/// What the key is derived for (a new purpose gets a new label, never this key).
const LABEL: &[u8] = b"kiln job seal v1";
/// The poll-only agent's own key, in its data dir.
const KEY_FILE: &str = "seal.key";

/// Seals jobs and checks their seals. Not `Debug`: it holds a key.
pub struct Sealer(Secret);

impl Sealer {
    /// The fleet's sealer: a key derived from the webhook secret.
    pub fn new(webhook_secret: &Secret) -> Sealer {
        Sealer(Secret::new(webhook_secret.sign(LABEL).into_bytes()))
    }

    /// A poll-only agent's sealer: a random key kept in `data_dir` (0600), made on first start.
    pub fn from_data_dir(data_dir: &Path) -> std::io::Result<Sealer> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join(KEY_FILE);
        if let Ok(key) = std::fs::read(&path) {
            if key.len() >= 32 {
                return Ok(Sealer(Secret::new(key)));
            }
        }
        let mut key = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        let key = hex::encode(key).into_bytes();
        let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(Sealer(Secret::new(key)))
    }

    /// `req` with its seal: a request fresh from a signed delivery or the poller (no seal yet)
    /// is sealed; one re-queued from a stored job keeps the seal that job had, valid or not.
    pub fn seal(&self, mut req: BuildRequest) -> BuildRequest {
        if req.seal.is_none() {
            req.seal = Some(self.0.sign(&facts(&req)));
        }
        req
    }

    /// Does `job`'s seal vouch for what its row says?
    pub fn verify(&self, job: &Job) -> bool {
        let req = job.request();
        let seal = req.seal.as_deref().unwrap_or_default();
        self.0.verify(Some(seal.as_bytes()), &facts(&req)).is_ok()
    }
}

/// What decides a job's trust, in one unambiguous encoding (a JSON array).
fn facts(req: &BuildRequest) -> Vec<u8> {
    serde_json::to_vec(&(
        &req.repo,
        &req.sha,
        &req.branch,
        &req.lane,
        &req.event,
        req.pr_number,
        req.fork,
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> BuildRequest {
        BuildRequest {
            repo: "o/r".into(),
            sha: "a".repeat(40),
            branch: "main".into(),
            lane: "o/r@main".into(),
            event: "push".into(),
            pr_number: None,
            fork: false,
            author: Some("alice".into()),
            seal: None,
        }
    }

    #[test]
    fn a_sealed_job_verifies_and_any_change_to_its_trust_breaks_the_seal() {
        let s = Sealer::new(&Secret::new("hook"));
        let job = Job::new(1, "d", s.seal(req()));
        assert!(s.verify(&job));
        let forged = |f: &dyn Fn(&mut Job)| {
            let mut j = job.clone();
            f(&mut j);
            s.verify(&j)
        };
        assert!(!forged(&|j| j.sha = "b".repeat(40)));
        assert!(!forged(&|j| j.fork = true));
        assert!(!forged(&|j| j.branch = "dev".into()));
        assert!(!forged(&|j| j.repo = "o/other".into()));
        assert!(!forged(&|j| j.pr_number = Some(3)));
        assert!(!forged(&|j| j.seal = None));
        assert!(!forged(&|j| j.seal = Some(String::new())));
        // Who asked does not decide trust.
        assert!(forged(&|j| j.author = None));
        // Another key (another fleet) does not vouch for it.
        assert!(!Sealer::new(&Secret::new("other")).verify(&job));
    }

    #[test]
    fn requeuing_a_stored_job_keeps_its_seal_even_an_invalid_one() {
        let s = Sealer::new(&Secret::new("hook"));
        let mut unsealed = Job::new(1, "d", req());
        unsealed.seal = None;
        let again = Job::new(2, "retry:1", s.seal(unsealed.request()));
        assert!(!s.verify(&again), "a retry must not launder a forged row");
        let sealed = Job::new(3, "d3", s.seal(req()));
        let again = Job::new(4, "retry:3", s.seal(sealed.request()));
        assert!(s.verify(&again));
    }

    #[test]
    fn a_poll_only_agent_keeps_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sealer::from_data_dir(dir.path()).unwrap();
        let job = Job::new(1, "d", a.seal(req()));
        let b = Sealer::from_data_dir(dir.path()).unwrap();
        assert!(b.verify(&job));
    }
}
