//! Each input of the actions reaches the `kiln` command line (a flag the real CLI accepts, or a
//! `KILN_*` variable), and each documented output is written by a step.
//!
//! The action's own `run:` steps run in the simulated runner against a stand-in `kiln` that
//! records its arguments and environment; the flags it received are then checked against the
//! real binary's `--help`, so the action and the CLI cannot drift apart.

use crate::support;
use crate::support::action::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Inputs consumed by the install step, not by `kiln`: covered by action_e2e.rs.
const INSTALL_INPUTS: [&str; 2] = ["version", "download-url"];

/// A stand-in `kiln` that records argv (one per line) and env, and exits with `$FAKE_EXIT`.
fn fake_kiln(dir: &Path) -> PathBuf {
    let path = dir.join("kiln");
    std::fs::write(
        &path,
        "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"$REC_DIR/args\"\nenv > \"$REC_DIR/env\"\nexit \"${FAKE_EXIT:-0}\"\n",
    )
    .unwrap();
    sh(dir, "chmod +x kiln");
    path
}

struct Recorded {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl Recorded {
    fn read(dir: &Path) -> Recorded {
        let args = std::fs::read_to_string(dir.join("args"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Recorded { args, env }
    }

    /// The flag whose value is `value`.
    fn flag_with_value(&self, value: &str) -> Option<&str> {
        self.args
            .windows(2)
            .find(|w| w[1] == value && w[0].starts_with("--"))
            .map(|w| w[0].as_str())
    }
}

/// Flags `kiln <subcommand> --help` lists, or `None` when the subcommand does not exist.
fn cli_flags(subcommand: &[&str]) -> Option<Vec<String>> {
    let out = support::kiln()
        .args(subcommand)
        .arg("--help")
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .collect(),
    )
}

fn distinct_value(input: &str, default: Option<&str>) -> String {
    match default {
        Some("false") => "true".to_string(),
        _ => format!("v-{input}"),
    }
}

#[test]
fn every_kiln_action_input_reaches_the_cli() {
    let root = support::root();
    let action = Action::load(&root.join("action"));
    let project = tempfile::tempdir().unwrap();
    let rec = tempfile::tempdir().unwrap();
    let fake = fake_kiln(rec.path());

    let inputs = action.inputs();
    let values: Vec<(String, String)> = inputs
        .iter()
        .filter(|(n, _)| !INSTALL_INPUTS.contains(&n.as_str()))
        .map(|(n, d)| (n.clone(), distinct_value(n, d.as_deref())))
        .collect();
    let with: Vec<(&str, &str)> = values
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut runner = Runner::new(project.path(), "0123456789012345678901234567890123456789");
    runner
        .env
        .insert("REC_DIR".into(), rec.path().display().to_string());
    let run = runner.run_action(
        &root.join("action"),
        &with,
        Some(&["run"]),
        &[("install", "path", fake.to_str().unwrap())],
    );
    assert!(run.success, "{}", run.log());
    let got = Recorded::read(rec.path());
    assert_eq!(got.args[0], "run", "{:?}", got.args);

    let run_flags = cli_flags(&["run"]).unwrap();
    let mut used_flags = Vec::new();
    for (name, value) in &values {
        if value == "true" {
            let flag = format!("--{name}");
            assert!(
                got.args.contains(&flag),
                "input {name}: {flag} not passed: {:?}",
                got.args
            );
            used_flags.push(flag);
        } else if let Some(flag) = got.flag_with_value(value) {
            used_flags.push(flag.to_string());
        } else {
            let var = got
                .env
                .iter()
                .find(|(k, v)| *v == value && k.starts_with("KILN_"))
                .map(|(k, _)| k.clone());
            assert!(
                var.is_some(),
                "input {name} (= {value}) reaches kiln neither as a flag nor as a KILN_* \
                 variable: args {:?}",
                got.args
            );
        }
    }
    for flag in &used_flags {
        assert!(
            run_flags.contains(flag),
            "the action passes {flag}, which `kiln run` does not accept ({run_flags:?})"
        );
    }
    // The token goes where the reporters look, never on the command line.
    assert_eq!(got.env["KILN_GITHUB_TOKEN"], "v-token");
    assert_eq!(
        got.env["GITHUB_TOKEN"], "v-token",
        "the reporter reads GITHUB_TOKEN"
    );
    assert!(!got.args.iter().any(|a| a.contains("v-token")));
    // The install inputs reach the install step, which reads them.
    let install_sh = std::fs::read_to_string(root.join("action/install.sh")).unwrap();
    let install_step = action
        .steps()
        .into_iter()
        .find(|s| s.get("id").and_then(|v| v.as_str()) == Some("install"))
        .unwrap();
    for input in INSTALL_INPUTS {
        let (var, _) = install_step["env"]
            .as_mapping()
            .unwrap()
            .iter()
            .find(|(_, v)| v.as_str() == Some(&format!("${{{{ inputs.{input} }}}}")))
            .unwrap_or_else(|| panic!("input {input} is not given to the install step"));
        let var = var.as_str().unwrap();
        assert!(
            install_sh.contains(&format!("${{{var}")),
            "install.sh ignores {var}"
        );
    }
}

#[test]
fn outcome_is_set_even_when_kiln_cannot_start() {
    let root = support::root();
    let project = tempfile::tempdir().unwrap();
    let rec = tempfile::tempdir().unwrap();
    let fake = fake_kiln(rec.path());
    let mut runner = Runner::new(project.path(), "0123456789012345678901234567890123456789");
    runner
        .env
        .insert("REC_DIR".into(), rec.path().display().to_string());
    runner.env.insert("FAKE_EXIT".into(), "2".into());
    runner
        .env
        .insert("GITHUB_TOKEN".into(), "job-level-token".into());
    let run = runner.run_action(
        &root.join("action"),
        &[("token", "")],
        Some(&["run"]),
        &[("install", "path", fake.to_str().unwrap())],
    );
    assert!(!run.success);
    assert_eq!(run.step("run").code, 2, "kiln's exit code is the step's");
    assert_eq!(run.outputs["outcome"], "error");
    // Defaults: the workspace as the repo, work dir and summary under RUNNER_TEMP, no token
    // flag, and the empty optional inputs pass nothing.
    let got = Recorded::read(rec.path());
    assert!(
        !got.env.contains_key("GITHUB_TOKEN") && !got.env.contains_key("KILN_GITHUB_TOKEN"),
        "token: \"\" turns GitHub reporting off"
    );
    assert_eq!(got.flag_with_value("."), Some("--repo"));
    for flag in [
        "--store",
        "--config",
        "--test-command",
        "--checkout",
        "--no-save",
    ] {
        assert!(
            !got.args.iter().any(|a| a == flag),
            "{flag} passed by default: {:?}",
            got.args
        );
    }
    let workdir = &got.args[got.args.iter().position(|a| a == "--workdir").unwrap() + 1];
    assert!(Path::new(workdir).starts_with(&runner.temp), "{workdir}");
}

#[test]
fn every_documented_output_is_written_by_a_step() {
    let root = support::root();
    let written_by_kiln: Vec<&str> = kiln::report::actions::outputs(
        &kiln::summary::RunSummary::default(),
        Some(Path::new("/tmp/summary.json")),
    )
    .into_iter()
    .map(|(k, _)| k)
    .collect();
    for rel in ["action", "action/restore", "action/save"] {
        let action = Action::load(&root.join(rel));
        let step_ids: Vec<String> = action
            .steps()
            .iter()
            .filter_map(|s| s.get("id").and_then(|v| v.as_str()).map(str::to_string))
            .collect();
        for (name, expr) in action.outputs() {
            let inner = expr
                .strip_prefix("${{ steps.")
                .and_then(|e| e.strip_suffix(" }}"))
                .unwrap_or_else(|| panic!("{rel}: output {name} is not a step output: {expr}"));
            let (step, out) = inner.split_once(".outputs.").unwrap();
            assert!(
                step_ids.iter().any(|s| s == step),
                "{rel}: output {name}: no step {step}"
            );
            let script = std::fs::read_to_string(root.join("action").join(match step {
                "install" => "install.sh",
                _ => "cache.sh",
            }))
            .unwrap();
            let written = match (rel, step) {
                ("action", "run") => written_by_kiln.contains(&out),
                (_, "install") => script.contains(&format!("echo \"{out}=")),
                // cache-primary-key is written by cache.sh; the others by `kiln cache restore`.
                (_, _) => {
                    script.contains(&format!("echo \"{out}="))
                        || ["cache-hit", "cache-result", "cache-matched-key"].contains(&out)
                }
            };
            assert!(
                written,
                "{rel}: output {name} ({step}.{out}) is written by nobody"
            );
        }
    }
}

#[test]
fn cache_sub_actions_map_inputs_to_kiln_cache_flags() {
    let root = support::root();
    let project = tempfile::tempdir().unwrap();
    let rec = tempfile::tempdir().unwrap();
    let fake = fake_kiln(rec.path());
    let mut runner = Runner::new(project.path(), "0123456789012345678901234567890123456789");
    runner
        .env
        .insert("REC_DIR".into(), rec.path().display().to_string());

    let run = runner.run_action(
        &root.join("action/restore"),
        &[
            ("key", "wheels-linux-abc"),
            ("restore-keys", "wheels-linux-\n  wheels-\n\n"),
            ("path", "~/.cache/a\n/tmp/b dir\n"),
            ("store", "file:///srv/kiln"),
            ("fail-on-cache-miss", "true"),
            ("lookup-only", "true"),
        ],
        Some(&["restore"]),
        &[("install", "path", fake.to_str().unwrap())],
    );
    assert!(run.success, "{}", run.log());
    let got = Recorded::read(rec.path());
    let home_a = format!("{}/.cache/a", runner.env["HOME"]);
    assert_eq!(
        got.args,
        [
            "cache",
            "restore",
            "--key",
            "wheels-linux-abc",
            "--path",
            &home_a,
            "--path",
            "/tmp/b dir",
            "--store",
            "file:///srv/kiln",
            "--restore-key",
            "wheels-linux-",
            "--restore-key",
            "wheels-",
            "--fail-on-miss",
            "--lookup-only"
        ]
    );
    assert_eq!(run.outputs["cache-primary-key"], "wheels-linux-abc");
    check_flags(&got.args, "restore");

    let run = runner.run_action(
        &root.join("action/save"),
        &[("key", "wheels-linux-abc"), ("path", "dist\n")],
        Some(&["save"]),
        &[("install", "path", fake.to_str().unwrap())],
    );
    assert!(run.success, "{}", run.log());
    let got = Recorded::read(rec.path());
    assert_eq!(
        got.args,
        [
            "cache",
            "save",
            "--key",
            "wheels-linux-abc",
            "--path",
            "dist"
        ]
    );
    check_flags(&got.args, "save");

    // A pull request from the same repository saves; one from a fork does not run kiln at all.
    for (fork, saves) in [(false, true), (true, false)] {
        std::fs::remove_file(rec.path().join("args")).ok();
        runner.pull_request(fork);
        let run = runner.run_action(
            &root.join("action/save"),
            &[("key", "k"), ("path", "dist")],
            Some(&["save"]),
            &[("install", "path", fake.to_str().unwrap())],
        );
        assert!(run.success, "{}", run.log());
        assert_eq!(
            rec.path().join("args").exists(),
            saves,
            "fork={fork}: {}",
            run.log()
        );
        if fork {
            assert!(
                run.stdout().contains("::notice title=Kiln cache::pull request #7 comes from a fork (mallory/widgets)"),
                "{}",
                run.log()
            );
        }
    }
}

fn check_flags(args: &[String], op: &str) {
    let known = cli_flags(&["cache", op]).expect("kiln cache restore|save exist");
    for a in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            known.contains(a),
            "`kiln cache {op}` does not accept {a} ({known:?})"
        );
    }
}
