//! What the test command needs from the environment: pytest, when it runs it. Both the
//! wheelhouse key (restore) and the install (bootstrap) ask.

/// True when the test command runs pytest (`python -m pytest`, `pytest -q`, …).
pub fn runs_pytest(test_command: &str) -> bool {
    test_command
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .any(|w| w == "pytest" || w.ends_with("/pytest") || w == "py.test")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_pytest_commands() {
        assert!(runs_pytest("python -m pytest"));
        assert!(runs_pytest("cd tests && pytest -q"));
        assert!(runs_pytest(".venv/bin/pytest"));
        assert!(!runs_pytest("python -m unittest"));
        assert!(!runs_pytest("make test-pytest-free"));
    }
}
