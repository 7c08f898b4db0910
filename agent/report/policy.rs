//! When to tell whom (`report.mode`), as a pure function of the branch state and this build.
//!
//! Kept free of I/O so every rule is a unit test: the channels (GitHub, email) only deliver what
//! this module decided.
//!
//! | mode      | first failure after green | still failing              | fixed | passing   |
//! |-----------|---------------------------|----------------------------|-------|-----------|
//! | `problem` | culprits                  | nobody                     | told  | nobody    |
//! | `change`  | culprits                  | new authors, if the failing tests changed | told | nobody |
//! | `failing` | culprits                  | all culprits, every build  | told  | nobody    |
//! | `all`     | culprits                  | all culprits, every build  | told  | new authors |
//!
//! In `problem` and `change` nobody hears twice about the same breakage. Bots never hear.
//!
//! An `error` (the machine's, not a commit's: see `summary::classify`) is none of these: nobody
//! hears, and the branch state stays as it was, so the next real failure is still the first
//! failure after green.

use crate::settings::file::ReportMode;
use crate::summary::{Outcome, RunSummary};

use super::blame::Person;
use super::state::BranchState;

/// What this build means for the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// First failing build after a green one (or the branch's first build, failing).
    Broken,
    /// Failing, and the previous build failed too.
    StillFailing,
    /// Passing after a failing build.
    Fixed,
    /// Passing, and the previous build passed too (or there was none).
    Passed,
    /// The build could not say: Kiln, the machine, the store, the network or a tool failed.
    Error,
}

impl Event {
    pub fn word(self) -> &'static str {
        match self {
            Event::Broken => "broken",
            Event::StillFailing => "still failing",
            Event::Fixed => "fixed",
            Event::Passed => "passed",
            Event::Error => "error (nobody blamed)",
        }
    }
}

/// What the report stage knows about this build.
#[derive(Debug, Clone)]
pub struct Build<'a> {
    pub sha: &'a str,
    pub outcome: Outcome,
    /// People behind the commits since the last green build (the breakage's blamelist).
    pub culprits: &'a [Person],
    /// People behind the commits since the previous build.
    pub new_people: &'a [Person],
    /// Names of the failing tests.
    pub failing_tests: &'a [String],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub event: Event,
    /// Who to tell, bots removed, no duplicates.
    pub recipients: Vec<Person>,
}

fn failing(o: Outcome) -> bool {
    o.blames()
}

/// People in `list` who are not bots, merged by identity.
fn humans<'a>(lists: impl IntoIterator<Item = &'a Person>) -> Vec<Person> {
    let mut out: Vec<Person> = Vec::new();
    for p in lists {
        if p.is_bot() {
            continue;
        }
        match out.iter_mut().find(|o| o.same_as(p)) {
            Some(o) => o.merge(p),
            None => out.push(p.clone()),
        }
    }
    out
}

/// Decide what this build means and who hears about it.
pub fn decide(mode: ReportMode, state: &BranchState, build: &Build<'_>) -> Decision {
    if build.outcome == Outcome::Error {
        return Decision {
            event: Event::Error,
            recipients: Vec::new(),
        };
    }
    let was_failing = state.was_failing();
    let event = match (was_failing, failing(build.outcome)) {
        (false, true) => Event::Broken,
        (true, true) => Event::StillFailing,
        (true, false) => Event::Fixed,
        (false, false) => Event::Passed,
    };
    let not_told = |ps: Vec<Person>| -> Vec<Person> {
        ps.into_iter().filter(|p| !state.was_told(p)).collect()
    };
    let recipients = match (event, mode) {
        (Event::Broken, ReportMode::Problem | ReportMode::Change) => {
            not_told(humans(build.culprits))
        }
        (Event::Broken, ReportMode::Failing | ReportMode::All) => humans(build.culprits),
        (Event::StillFailing, ReportMode::Problem) => Vec::new(),
        (Event::StillFailing, ReportMode::Change) => {
            let mut now: Vec<&String> = build.failing_tests.iter().collect();
            let mut before: Vec<&String> = state.failing_tests.iter().collect();
            now.sort();
            before.sort();
            let changed = now != before || state.last_outcome != Some(build.outcome);
            if changed {
                not_told(humans(build.new_people))
            } else {
                Vec::new()
            }
        }
        (Event::StillFailing, ReportMode::Failing | ReportMode::All) => {
            humans(build.culprits.iter().chain(&state.blamed))
        }
        (Event::Fixed, _) => humans(state.blamed.iter().chain(&state.told)),
        (Event::Passed, ReportMode::All) => humans(build.new_people),
        (Event::Passed | Event::Error, _) => Vec::new(),
    };
    Decision { event, recipients }
}

/// Why nobody is blamed for a build that did not simply pass or fail, in words every channel
/// shows: an error is not a commit's fault; flaky tests blame nobody.
pub fn blame_withheld(s: &RunSummary) -> Option<String> {
    let flaky = s.flaky.len();
    match s.outcome {
        Outcome::Error => Some(format!(
            "blame withheld: this is an error ({}), not a commit's fault; nobody was told and \
             the branch's state is unchanged",
            s.error
                .as_deref()
                .map(super::vocab::first_line)
                .unwrap_or("Kiln or the machine failed")
        )),
        Outcome::Passed if flaky > 0 => Some(format!(
            "blame withheld: {flaky} flaky test(s) failed, then passed when re-run"
        )),
        _ => None,
    }
}

/// The branch state after this build, given who was actually told (on any channel).
pub fn next_state(
    state: &BranchState,
    build: &Build<'_>,
    event: Event,
    told: &[Person],
) -> BranchState {
    if event == Event::Error {
        return state.clone();
    }
    let mut next = state.clone();
    next.last_sha = Some(build.sha.to_string());
    next.last_outcome = Some(build.outcome);
    next.failing_tests = build.failing_tests.to_vec();
    match event {
        Event::Passed | Event::Fixed => {
            next.last_green = Some(build.sha.to_string());
            next.failing_since = None;
            next.blamed.clear();
            next.told.clear();
        }
        Event::Broken => {
            next.failing_since = Some(build.sha.to_string());
            next.blamed = humans(build.culprits);
            next.told = humans(told);
        }
        Event::StillFailing => {
            next.blamed = humans(next.blamed.iter().chain(told));
            next.told = humans(next.told.iter().chain(told));
        }
        Event::Error => {}
    }
    next
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)] // literal slices read best in these tables
mod tests {
    use super::*;

    fn p(name: &str) -> Person {
        Person::new(name, &format!("{}@example.com", name.to_lowercase()))
    }

    fn names(d: &Decision) -> Vec<String> {
        d.recipients.iter().map(|p| p.name.clone()).collect()
    }

    struct Sim {
        mode: ReportMode,
        state: BranchState,
    }

    impl Sim {
        fn new(mode: ReportMode) -> Sim {
            Sim {
                mode,
                state: BranchState::default(),
            }
        }
        /// Run one build; everyone decided on is "told".
        fn build(
            &mut self,
            sha: &str,
            outcome: Outcome,
            culprits: &[Person],
            new: &[Person],
            tests: &[&str],
        ) -> Decision {
            let tests: Vec<String> = tests.iter().map(|s| s.to_string()).collect();
            let b = Build {
                sha,
                outcome,
                culprits,
                new_people: new,
                failing_tests: &tests,
            };
            let d = decide(self.mode, &self.state, &b);
            self.state = next_state(&self.state, &b, d.event, &d.recipients);
            d
        }
    }

    #[test]
    fn problem_mode_tells_once_then_fixed() {
        let (a, b, c, d, e) = (p("A"), p("B"), p("C"), p("D"), p("E"));
        let mut s = Sim::new(ReportMode::Problem);
        let r = s.build("1", Outcome::Passed, &[a.clone()], &[a.clone()], &[]);
        assert_eq!((r.event, names(&r).len()), (Event::Passed, 0));
        let bc = [b.clone(), c.clone()];
        let r = s.build("3", Outcome::Failed, &bc, &bc, &["t1"]);
        assert_eq!(r.event, Event::Broken);
        assert_eq!(names(&r), ["B", "C"]);
        // Still failing, with a new commit by E and by B: nobody new.
        let r = s.build(
            "4",
            Outcome::Failed,
            &[e.clone(), b.clone(), c.clone()],
            &[e.clone(), b.clone()],
            &["t1", "t2"],
        );
        assert_eq!(r.event, Event::StillFailing);
        assert!(r.recipients.is_empty());
        // Rebuild of the same commit: nobody.
        let r = s.build("4", Outcome::Failed, &bc, &[], &["t1"]);
        assert!(r.recipients.is_empty());
        // Fixed by D: B and C hear it.
        let r = s.build("5", Outcome::Passed, &[], &[d.clone()], &[]);
        assert_eq!(r.event, Event::Fixed);
        assert_eq!(names(&r), ["B", "C"]);
        assert_eq!(s.state.last_green.as_deref(), Some("5"));
        assert!(s.state.told.is_empty());
        let r = s.build("6", Outcome::Passed, &[], &[a], &[]);
        assert!(r.recipients.is_empty());
    }

    #[test]
    fn failing_mode_tells_every_failing_build() {
        let (b, c) = (p("B"), p("C"));
        let mut s = Sim::new(ReportMode::Failing);
        s.build("1", Outcome::Passed, &[], &[], &[]);
        let r = s.build("2", Outcome::Failed, &[b.clone()], &[b.clone()], &["t"]);
        assert_eq!(names(&r), ["B"]);
        let r = s.build("3", Outcome::Failed, &[c.clone(), b.clone()], &[c], &["t"]);
        assert_eq!(names(&r), ["C", "B"]);
        let r = s.build("3", Outcome::Broken, &[], &[], &[]);
        assert_eq!(names(&r), ["B", "C"], "a broken build is failing too");
    }

    #[test]
    fn an_error_tells_nobody_and_leaves_the_state_as_it_was() {
        let (a, b, c) = (p("A"), p("B"), p("C"));
        for mode in [
            ReportMode::Problem,
            ReportMode::Change,
            ReportMode::Failing,
            ReportMode::All,
        ] {
            let mut s = Sim::new(mode);
            s.build("1", Outcome::Passed, &[a.clone()], &[a.clone()], &[]);
            let green = s.state.clone();
            let r = s.build("2", Outcome::Error, &[b.clone()], &[b.clone()], &[]);
            assert_eq!((r.event, names(&r).len()), (Event::Error, 0), "{mode:?}");
            assert_eq!(s.state, green, "{mode:?}: the state did not move");
            // The next real failure is still the first after green, and blames its range.
            let r = s.build(
                "3",
                Outcome::Failed,
                &[c.clone(), b.clone()],
                &[c.clone()],
                &["t"],
            );
            assert_eq!(r.event, Event::Broken, "{mode:?}");
            assert_eq!(names(&r), ["C", "B"], "{mode:?}");
            // An error while failing: nobody, and the breakage is still the one told about.
            let failing = s.state.clone();
            let r = s.build("4", Outcome::Error, &[], &[], &[]);
            assert!(r.recipients.is_empty(), "{mode:?}");
            assert_eq!(s.state, failing, "{mode:?}");
        }
    }

    #[test]
    fn change_mode_tells_new_authors_when_failures_change() {
        let (b, c, e) = (p("B"), p("C"), p("E"));
        let mut s = Sim::new(ReportMode::Change);
        let r = s.build("2", Outcome::Failed, &[b.clone()], &[b.clone()], &["t1"]);
        assert_eq!(r.event, Event::Broken);
        assert_eq!(names(&r), ["B"]);
        // Same failures: nobody.
        let r = s.build(
            "3",
            Outcome::Failed,
            &[c.clone(), b.clone()],
            &[c.clone()],
            &["t1"],
        );
        assert!(r.recipients.is_empty());
        // New failure with commits by B (told) and E: only E.
        let r = s.build(
            "4",
            Outcome::Failed,
            &[e.clone(), b.clone()],
            &[e.clone(), b.clone()],
            &["t1", "t2"],
        );
        assert_eq!(names(&r), ["E"]);
        let r = s.build("5", Outcome::Passed, &[], &[c], &[]);
        assert_eq!(names(&r), ["B", "E"]);
    }

    #[test]
    fn all_mode_tells_passing_authors_and_bots_never() {
        let bot = Person::new(
            "dependabot[bot]",
            "1+dependabot[bot]@users.noreply.github.com",
        );
        let a = p("A");
        let mut s = Sim::new(ReportMode::All);
        let r = s.build("1", Outcome::Passed, &[], &[a.clone(), bot.clone()], &[]);
        assert_eq!(names(&r), ["A"]);
        let r = s.build("2", Outcome::Failed, &[bot.clone()], &[bot], &["t"]);
        assert_eq!(r.event, Event::Broken);
        assert!(r.recipients.is_empty());
    }
}
