//! `GET /metrics` in the Prometheus text format, written by hand: a few counters and histograms
//! do not justify a metrics framework, and the names here are a public interface (docs/agent.md).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::queue::{Counts, JobOutcome};
use crate::summary::{RestoreHit, RunSummary};

/// Webhook answers, by result label.
pub const RESULTS: [&str; 11] = [
    "accepted",
    "duplicate",
    "ignored",
    "pong",
    "unauthorized",
    "too_large",
    "malformed",
    "unknown_repo",
    "unsupported_event",
    "unavailable",
    "error",
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

const ACCEPT_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const STAGE_BOUNDS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

struct State {
    webhooks: BTreeMap<&'static str, u64>,
    accept: Histogram,
    stages: BTreeMap<String, Histogram>,
    jobs: Histogram,
    restores: BTreeMap<(String, &'static str), u64>,
    refused: BTreeMap<&'static str, u64>,
}

/// What `refused` counts (always rendered, 0 included).
const REFUSALS: [&str; 2] = ["throttled", "unsealed_job"];

pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            state: Mutex::new(State {
                webhooks: RESULTS.iter().map(|r| (*r, 0)).collect(),
                accept: Histogram::new(ACCEPT_BOUNDS),
                stages: BTreeMap::new(),
                jobs: Histogram::new(STAGE_BOUNDS),
                restores: BTreeMap::new(),
                refused: REFUSALS.iter().map(|r| (*r, 0)).collect(),
            }),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one webhook answer; `seconds` is the time to answer (observed for accepted ones).
    pub fn webhook(&self, result: &'static str, seconds: f64) {
        let mut s = self.lock();
        *s.webhooks.entry(result).or_default() += 1;
        if result == "accepted" {
            s.accept.observe(seconds);
        }
    }

    /// Count one thing refused for safety: `unsealed_job` (a queue row no agent sealed, not
    /// built), `throttled` (a client guessing tokens or passwords, answered 429).
    pub fn refused(&self, reason: &'static str) {
        *self.lock().refused.entry(reason).or_default() += 1;
    }

    /// Record a finished build's stage times and cache results.
    pub fn build(&self, seconds: f64, summary: Option<&RunSummary>) {
        let mut s = self.lock();
        s.jobs.observe(seconds);
        let Some(sum) = summary else { return };
        for st in &sum.stages {
            s.stages
                .entry(st.name.clone())
                .or_insert_with(|| Histogram::new(STAGE_BOUNDS))
                .observe(st.seconds);
        }
        for c in &sum.caches {
            let r = match c.restore {
                RestoreHit::Exact => "exact",
                RestoreHit::Partial => "partial",
                RestoreHit::Miss => "miss",
            };
            *s.restores.entry((c.name.clone(), r)).or_default() += 1;
        }
    }

    pub fn render(&self, counts: &Counts, workers: usize, draining: bool) -> String {
        let s = self.lock();
        let mut o = String::new();
        let _ = writeln!(o, "# HELP kiln_agent_queue_depth Jobs waiting for a worker.\n# TYPE kiln_agent_queue_depth gauge\nkiln_agent_queue_depth {}", counts.queued);
        let _ = writeln!(o, "# HELP kiln_agent_jobs_running Jobs being built now.\n# TYPE kiln_agent_jobs_running gauge\nkiln_agent_jobs_running {}", counts.running);
        let _ = writeln!(o, "# HELP kiln_agent_workers Configured build workers.\n# TYPE kiln_agent_workers gauge\nkiln_agent_workers {workers}");
        let _ = writeln!(o, "# HELP kiln_agent_draining 1 while shutting down (webhooks refused with 503).\n# TYPE kiln_agent_draining gauge\nkiln_agent_draining {}", u8::from(draining));
        let _ = writeln!(o, "# HELP kiln_agent_jobs_total Finished jobs in the data dir, by outcome.\n# TYPE kiln_agent_jobs_total counter");
        for outcome in JobOutcome::ALL {
            let _ = writeln!(
                o,
                "kiln_agent_jobs_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                counts.done.get(&outcome).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(o, "# HELP kiln_agent_webhooks_total Webhook deliveries since start, by answer.\n# TYPE kiln_agent_webhooks_total counter");
        for (r, n) in &s.webhooks {
            let _ = writeln!(o, "kiln_agent_webhooks_total{{result=\"{r}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP kiln_agent_refused_total Refused for safety since start: jobs whose queue row carries no valid seal (not built), requests of a client throttled after failed logins or tokens.\n# TYPE kiln_agent_refused_total counter");
        for (r, n) in &s.refused {
            let _ = writeln!(o, "kiln_agent_refused_total{{reason=\"{r}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP kiln_agent_accept_seconds Time to durably queue a delivery and answer 202.\n# TYPE kiln_agent_accept_seconds histogram");
        s.accept.render(&mut o, "kiln_agent_accept_seconds", "");
        let _ = writeln!(o, "# HELP kiln_agent_job_seconds Wall time of builds since start.\n# TYPE kiln_agent_job_seconds histogram");
        s.jobs.render(&mut o, "kiln_agent_job_seconds", "");
        let _ = writeln!(o, "# HELP kiln_agent_stage_seconds Wall time of build stages since start.\n# TYPE kiln_agent_stage_seconds histogram");
        for (stage, h) in &s.stages {
            h.render(
                &mut o,
                "kiln_agent_stage_seconds",
                &format!("stage=\"{stage}\""),
            );
        }
        let _ = writeln!(o, "# HELP kiln_agent_cache_restores_total Cache restores since start, by cache and result.\n# TYPE kiln_agent_cache_restores_total counter");
        let (mut hits, mut total) = (0u64, 0u64);
        for ((cache, r), n) in &s.restores {
            let _ = writeln!(
                o,
                "kiln_agent_cache_restores_total{{cache=\"{cache}\",result=\"{r}\"}} {n}"
            );
            total += n;
            if *r != "miss" {
                hits += n;
            }
        }
        let ratio = if total == 0 {
            0.0
        } else {
            hits as f64 / total as f64
        };
        let _ = writeln!(o, "# HELP kiln_agent_cache_hit_ratio Exact or partial cache restores over all restores since start.\n# TYPE kiln_agent_cache_hit_ratio gauge\nkiln_agent_cache_hit_ratio {ratio}");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{CacheSummary, StageOutcome, StageSummary};

    #[test]
    fn renders_counters_histograms_and_ratio() {
        let m = Metrics::default();
        m.webhook("accepted", 0.003);
        m.webhook("unauthorized", 0.0);
        let sum = RunSummary {
            stages: vec![StageSummary {
                name: "test".into(),
                seconds: 2.0,
                outcome: StageOutcome::Ok,
                detail: None,
            }],
            caches: vec![
                CacheSummary {
                    name: "wheelhouse".into(),
                    restore: RestoreHit::Exact,
                    ..Default::default()
                },
                CacheSummary {
                    name: "ccache".into(),
                    restore: RestoreHit::Miss,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        m.build(3.0, Some(&sum));
        let mut counts = Counts {
            queued: 4,
            ..Default::default()
        };
        counts.done.insert(JobOutcome::Passed, 2);
        let text = m.render(&counts, 2, false);
        for line in [
            "kiln_agent_queue_depth 4",
            "kiln_agent_jobs_total{outcome=\"passed\"} 2",
            "kiln_agent_webhooks_total{result=\"accepted\"} 1",
            "kiln_agent_webhooks_total{result=\"unauthorized\"} 1",
            "kiln_agent_accept_seconds_bucket{le=\"0.005\"} 1",
            "kiln_agent_accept_seconds_count 1",
            "kiln_agent_stage_seconds_bucket{stage=\"test\",le=\"5\"} 1",
            "kiln_agent_stage_seconds_bucket{stage=\"test\",le=\"1\"} 0",
            "kiln_agent_cache_hit_ratio 0.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
