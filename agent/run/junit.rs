//! Test stage: run the configured command, then read the JUnit XML it left.
//!
//! pytest is pointed at the results directory through `PYTEST_ADDOPTS` (so wrappers such as tox
//! or make still get it); any other runner can write JUnit files into `$KILN_JUNIT_DIR`.

use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::summary::{TestFailure, TestSummary};
use crate::untrusted_fs;

/// The largest JUnit file read (pytest writes ~300 bytes a test: room for 200,000 tests).
pub const MAX_JUNIT_FILE: u64 = 64 << 20;
/// The most JUnit bytes read from one results directory, over all files.
pub const MAX_JUNIT_TOTAL: u64 = 256 << 20;

/// Counts and failures from every `*.xml` file in `dir`. The directory is the project's: a
/// file that is a link, not a regular file, too large, or unparsable is skipped with a warning
/// (see [`crate::untrusted_fs`]).
pub fn collect_junit(dir: &Path) -> (TestSummary, Vec<String>) {
    let mut total = TestSummary::default();
    let mut warnings = Vec::new();
    let rd = match untrusted_fs::real_dir(dir).then(|| std::fs::read_dir(dir)) {
        Some(Ok(rd)) => rd,
        _ => {
            total.not_counted = true;
            return (total, warnings);
        }
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    let mut read = 0;
    let mut budget = MAX_JUNIT_TOTAL;
    for f in files {
        let limit = budget.min(MAX_JUNIT_FILE);
        match untrusted_fs::read_to_string(&f, limit)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                budget -= t.len() as u64;
                parse_junit(&t)
            }) {
            Ok(s) => {
                read += 1;
                total.passed += s.passed;
                total.failed += s.failed;
                total.skipped += s.skipped;
                total.failures.extend(s.failures);
                total.passed_names.extend(s.passed_names);
            }
            Err(e) => warnings.push(format!("ignoring JUnit file {}: {e}", f.display())),
        }
    }
    if read == 0 {
        total.not_counted = true;
        warnings.push(
            "the test command wrote no JUnit report (pytest's junitxml plugin disabled with \
             `-p no:junitxml`, or another runner not writing to $KILN_JUNIT_DIR): tests not \
             counted, only the exit code decides"
                .into(),
        );
    }
    (total, warnings)
}

#[derive(Default)]
struct Case {
    name: String,
    classname: String,
    file: Option<String>,
    line: Option<u32>,
    status: CaseStatus,
    message: String,
    body: String,
}

#[derive(Default, PartialEq)]
enum CaseStatus {
    #[default]
    Passed,
    Failed,
    Skipped,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| AsRef::<str>::as_ref(&a.key) == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// The text an entity or character reference (`&gt;`, `&#10;`) stands for.
fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> String {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return c.to_string();
    }
    let name = r.xml10_content();
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_string)
        .unwrap_or_else(|| format!("&{name};"))
}

/// Parse one JUnit XML document (pytest, nextest, Surefire, … dialects).
pub fn parse_junit(text: &str) -> Result<TestSummary, String> {
    let mut reader = Reader::from_str(text);
    let mut p = Parser::default();
    loop {
        match reader.read_event() {
            Err(e) => {
                return Err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.buffer_position()
                ))
            }
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => p.open(&e, false),
            Ok(Event::Empty(e)) => p.open(&e, true),
            Ok(Event::Text(t)) if p.in_failure => p.text(&t.xml10_content()),
            Ok(Event::GeneralRef(r)) if p.in_failure => p.text(&resolve_ref(&r)),
            Ok(Event::CData(t)) if p.in_failure => p.text(t.as_ref()),
            Ok(Event::End(e)) => p.close(AsRef::<str>::as_ref(&e.name())),
            _ => {}
        }
    }
    Ok(p.summary)
}

/// Where the JUnit reader is: the test case it is in, and whether inside its failure.
#[derive(Default)]
struct Parser {
    summary: TestSummary,
    case: Option<Case>,
    in_failure: bool,
}

impl Parser {
    /// An opening (or, when `empty`, self-closing) element.
    fn open(&mut self, e: &BytesStart<'_>, empty: bool) {
        let name = AsRef::<str>::as_ref(&e.name()).to_string();
        if name == "testcase" && self.case.is_none() {
            let c = Case {
                name: attr(e, "name").unwrap_or_default(),
                classname: attr(e, "classname").unwrap_or_default(),
                file: attr(e, "file"),
                // pytest's `line` is 0-based.
                line: attr(e, "line")
                    .and_then(|l| l.parse::<u32>().ok())
                    .map(|l| l + 1),
                ..Case::default()
            };
            if empty {
                finish(&mut self.summary, c);
            } else {
                self.case = Some(c);
            }
            return;
        }
        let Some(c) = self.case.as_mut() else {
            return;
        };
        match name.as_str() {
            "failure" | "error" => {
                c.status = CaseStatus::Failed;
                c.message = attr(e, "message").unwrap_or_default();
                self.in_failure = !empty;
            }
            "skipped" if c.status != CaseStatus::Failed => c.status = CaseStatus::Skipped,
            _ => {}
        }
    }

    /// Text inside a failure: the traceback.
    fn text(&mut self, s: &str) {
        if let Some(c) = self.case.as_mut() {
            c.body.push_str(s);
        }
    }

    fn close(&mut self, name: &str) {
        match name {
            "failure" | "error" => self.in_failure = false,
            "testcase" => {
                if let Some(c) = self.case.take() {
                    finish(&mut self.summary, c);
                }
            }
            _ => {}
        }
    }
}

/// `classname::name`, the name a test goes by in every report.
fn case_name(c: &Case) -> String {
    if c.classname.is_empty() {
        c.name.clone()
    } else {
        format!("{}::{}", c.classname, c.name)
    }
}

/// pytest's node id from a JUnit case (`tests/test_x.py::TestC::test_y[1]`), when the case
/// names its file (pytest's xunit1 family does) and its class path starts with that module.
fn pytest_node_id(c: &Case) -> Option<String> {
    let file = c.file.as_deref().filter(|f| f.ends_with(".py"))?;
    let module = file.trim_end_matches(".py").replace(['/', '\\'], ".");
    let rest = c.classname.strip_prefix(module.as_str())?;
    let mut id = file.to_string();
    for class in rest.split('.').filter(|p| !p.is_empty()) {
        id.push_str("::");
        id.push_str(class);
    }
    id.push_str("::");
    id.push_str(&c.name);
    Some(id)
}

fn finish(summary: &mut TestSummary, mut c: Case) {
    match c.status {
        CaseStatus::Passed => {
            summary.passed += 1;
            summary.passed_names.push(case_name(&c));
        }
        CaseStatus::Skipped => summary.skipped += 1,
        CaseStatus::Failed => {
            summary.failed += 1;
            let name = case_name(&c);
            let rerun_id = pytest_node_id(&c);
            // Prefer the traceback's frame in the test's own file: it is the failing line.
            if let Some((file, line)) = traceback_location(&c.body, c.file.as_deref()) {
                c.file = Some(file);
                c.line = Some(line);
            }
            let message = if c.message.is_empty() {
                c.body.lines().last().unwrap_or("").trim().to_string()
            } else {
                c.message
            };
            summary.failures.push(TestFailure {
                name,
                file: c.file,
                line: c.line,
                message,
                rerun_id,
            });
        }
    }
}

/// The last `path.py:LINE:` frame in a traceback, preferring frames in `file`.
fn traceback_location(body: &str, file: Option<&str>) -> Option<(String, u32)> {
    let mut last = None;
    let mut last_in_file = None;
    for l in body.lines() {
        let l = l.trim();
        let Some((path, rest)) = l.split_once(".py:") else {
            continue;
        };
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(line) = digits.parse::<u32>() else {
            continue;
        };
        if path.contains(' ') {
            continue;
        }
        let path = format!("{path}.py");
        if file.is_some_and(|f| f == path) {
            last_in_file = Some((path.clone(), line));
        }
        last = Some((path, line));
    }
    last_in_file.or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTEST: &str = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4">
<testcase classname="tests.test_app" name="test_ok" file="tests/test_app.py" line="3" time="0.001" />
<testcase classname="tests.test_app" name="test_sum" file="tests/test_app.py" line="7" time="0.002"><failure message="assert 7 == 6&#10; +  where 7 = total([1, 2, 3])">def test_sum():
&gt;       assert total([1, 2, 3]) == 6
E       assert 7 == 6

tests/test_app.py:9: AssertionError</failure></testcase>
<testcase classname="tests.test_app" name="test_skip" file="tests/test_app.py" line="11" time="0.0"><skipped type="pytest.skip" message="later">skip</skipped></testcase>
<testcase classname="tests.test_app" name="test_ok2" time="0.001"></testcase>
</testsuite></testsuites>"#;

    #[test]
    fn parses_pytest_junit() {
        let s = parse_junit(PYTEST).unwrap();
        assert_eq!((s.passed, s.failed, s.skipped), (2, 1, 1));
        let f = &s.failures[0];
        assert_eq!(f.name, "tests.test_app::test_sum");
        assert_eq!(f.file.as_deref(), Some("tests/test_app.py"));
        assert_eq!(f.line, Some(9));
        assert!(f.message.starts_with("assert 7 == 6"), "{}", f.message);
        assert_eq!(f.rerun_id.as_deref(), Some("tests/test_app.py::test_sum"));
        assert_eq!(s.passed_names.len(), 2);
    }

    #[test]
    fn node_ids_keep_classes_and_parameters() {
        let xml = r#"<testsuite><testcase classname="tests.sub.test_m.TestA" name="test_b[x-1]" file="tests/sub/test_m.py" line="3"><failure message="no"/></testcase>
            <testcase classname="other" name="test_c"><failure message="no"/></testcase></testsuite>"#;
        let s = parse_junit(xml).unwrap();
        assert_eq!(
            s.failures[0].rerun_id.as_deref(),
            Some("tests/sub/test_m.py::TestA::test_b[x-1]")
        );
        assert_eq!(
            s.failures[1].rerun_id, None,
            "no file: cannot be selected alone"
        );
    }

    #[test]
    fn malformed_xml_is_an_error() {
        assert!(parse_junit("<testsuite><testcase name='x'></testsuite>").is_err());
    }

    #[test]
    fn collect_sums_files_and_skips_bad_ones() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.xml"), PYTEST).unwrap();
        std::fs::write(d.path().join("b.xml"), "<nope").unwrap();
        let (s, w) = collect_junit(d.path());
        assert_eq!(s.failed, 1);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn no_report_means_tests_not_counted_never_zero_passed() {
        let d = tempfile::tempdir().unwrap();
        let (s, w) = collect_junit(d.path());
        assert!(s.not_counted);
        assert_eq!(s.counts(), "tests not counted (no JUnit report)");
        assert!(w[0].contains("-p no:junitxml"), "{w:?}");
        std::fs::write(d.path().join("a.xml"), PYTEST).unwrap();
        assert!(!collect_junit(d.path()).0.not_counted);
    }
}
