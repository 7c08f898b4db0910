//! Every workflow and action file passes `actionlint`, and the action's scripts pass
//! `shellcheck` (both installed by scripts/setup.sh).
//!
//! actionlint checks workflows, not action metadata, so each composite action is checked twice
//! through a generated workflow: once with its steps inlined as a job (expressions, contexts,
//! step outputs, the shell in `run:`), once called as a local action with every input (the
//! metadata: input names, required inputs, outputs).

use crate::support;
use crate::support::action::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    which::which(name).unwrap_or_else(|_| {
        panic!("{name} is not on PATH: run scripts/setup.sh (it installs {name})")
    })
}

fn actionlint(dir: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool("actionlint"))
        .arg("-no-color")
        .arg("-oneline")
        .args(files)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn workflows_pass_actionlint() {
    let root = support::root();
    let mut files = yaml_files(&root.join("workflows"));
    files.extend(yaml_files(&root.join(".github/workflows")));
    assert!(
        files.len() >= 5,
        "expected the starter and own workflows: {files:?}"
    );
    let (ok, out) = actionlint(&root, &files);
    assert!(ok, "actionlint found problems:\n{out}");
}

/// The composite actions, relative to the repository root.
const ACTIONS: [&str; 3] = ["action", "action/restore", "action/save"];

#[test]
fn actions_pass_actionlint() {
    let root = support::root();
    let work = tempfile::tempdir().unwrap();
    // A copy of the repository's actions, so `uses: ./action/...` resolves inside `work`.
    sh(
        work.path(),
        &format!(
            "git init -q && mkdir -p .github/workflows && cp -R '{}' action",
            root.join("action").display()
        ),
    );
    let mut files = Vec::new();
    for rel in ACTIONS {
        let action = Action::load(&root.join(rel));
        let name = rel.replace('/', "-");

        // 1. The steps, inlined as a job; the inputs become workflow_dispatch inputs.
        let mut inputs = serde_yaml::Mapping::new();
        let mut with = serde_yaml::Mapping::new();
        for (input, default) in action.inputs() {
            let mut spec = serde_yaml::Mapping::new();
            spec.insert("type".into(), "string".into());
            inputs.insert(input.clone().into(), spec.into());
            // Every input, with a plausible value, for the call below.
            let value = match default.as_deref() {
                Some(d) if !d.is_empty() && !d.contains("${{") => d.to_string(),
                _ => "x".to_string(),
            };
            with.insert(input.into(), value.into());
        }
        let steps_job = serde_yaml::to_value(serde_yaml::Mapping::from_iter([
            ("runs-on".into(), "ubuntu-latest".into()),
            ("steps".into(), serde_yaml::Value::Sequence(action.steps())),
        ]))
        .unwrap();
        // 2. The action called as a local action with every input.
        let call = serde_yaml::Mapping::from_iter([
            ("id".into(), "it".into()),
            ("uses".into(), format!("./{rel}").into()),
            ("with".into(), with.into()),
        ]);
        let mut call_steps = vec![
            serde_yaml::to_value(serde_yaml::Mapping::from_iter([(
                "uses".into(),
                "actions/checkout@v5".into(),
            )]))
            .unwrap(),
            call.into(),
        ];
        // Reading each declared output checks it exists in the metadata.
        for (output, _) in action.outputs() {
            call_steps.push(
                serde_yaml::to_value(serde_yaml::Mapping::from_iter([
                    ("run".into(), "echo \"$V\"".into()),
                    (
                        "env".into(),
                        serde_yaml::Mapping::from_iter([(
                            "V".into(),
                            format!("${{{{ steps.it.outputs.{output} }}}}").into(),
                        )])
                        .into(),
                    ),
                ]))
                .unwrap(),
            );
        }
        let call_job = serde_yaml::Mapping::from_iter([
            ("runs-on".into(), "ubuntu-latest".into()),
            ("steps".into(), serde_yaml::Value::Sequence(call_steps)),
        ]);
        let workflow = serde_yaml::Mapping::from_iter([
            ("name".into(), format!("check {rel}").into()),
            (
                "on".into(),
                serde_yaml::Mapping::from_iter([(
                    "workflow_dispatch".into(),
                    serde_yaml::Mapping::from_iter([("inputs".into(), inputs.into())]).into(),
                )])
                .into(),
            ),
            ("permissions".into(), "read-all".into()),
            (
                "jobs".into(),
                serde_yaml::Mapping::from_iter([
                    ("steps".into(), steps_job),
                    ("call".into(), call_job.into()),
                ])
                .into(),
            ),
        ]);
        let path = work
            .path()
            .join(".github/workflows")
            .join(format!("{name}.yml"));
        std::fs::write(&path, serde_yaml::to_string(&workflow).unwrap()).unwrap();
        files.push(path);
    }
    let (ok, out) = actionlint(work.path(), &files);
    assert!(ok, "actionlint found problems in the actions:\n{out}");

    // The check can fail: a misspelled input in a call is caught.
    let broken = work.path().join(".github/workflows/broken.yml");
    std::fs::write(
        &broken,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./action\n        with:\n          tset-command: pytest\n",
    )
    .unwrap();
    let (ok, out) = actionlint(work.path(), &[broken]);
    assert!(!ok && out.contains("tset-command"), "{out}");
}

#[test]
fn action_scripts_pass_shellcheck() {
    let dir = support::root().join("action");
    let scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    assert!(scripts.len() >= 3, "{scripts:?}");
    let out = Command::new(tool("shellcheck"))
        .args(["--shell=bash", "--severity=style"])
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
