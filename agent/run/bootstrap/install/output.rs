//! What pip and uv reported: the wheels `pip wheel` built and used, the packages an install
//! installed, the package a failed build names, the compiler's error lines.

use std::collections::BTreeSet;
use std::path::Path;

/// What `pip wheel` reported.
#[derive(Debug, Default, PartialEq)]
pub struct WheelReport {
    pub built: Vec<String>,
    /// Wheel file names the resolution used (built, downloaded or already there).
    pub used: BTreeSet<String>,
    pub reused: u32,
}

impl WheelReport {
    pub fn merge(&mut self, other: WheelReport) {
        self.built.extend(other.built);
        self.used.extend(other.used);
        self.reused += other.reused;
    }
}

pub fn parse_pip_wheel(lines: &[String]) -> WheelReport {
    let mut r = WheelReport::default();
    let file_name = |p: &str| {
        Path::new(p.trim())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    };
    for line in lines {
        let l = line.trim();
        if let Some(names) = l.strip_prefix("Successfully built ") {
            r.built.extend(names.split_whitespace().map(str::to_string));
        } else if let Some(p) = l.strip_prefix("File was already downloaded ") {
            r.reused += 1;
            r.used.extend(file_name(p));
        } else if let Some(p) = l.strip_prefix("Saved ") {
            r.used.extend(file_name(p));
        } else if let Some(rest) = l.strip_prefix("Created wheel for ") {
            if let Some(f) = rest.split("filename=").nth(1) {
                r.used
                    .extend(f.split_whitespace().next().map(str::to_string));
            }
        }
    }
    r
}

/// Number of packages an install reported.
pub fn parse_installed(lines: &[String]) -> u32 {
    for line in lines.iter().rev() {
        let l = line.trim();
        if let Some(names) = l.strip_prefix("Successfully installed ") {
            return names.split_whitespace().count() as u32;
        }
        // uv: "Installed 10 packages in 21ms"
        if let Some(rest) = l.strip_prefix("Installed ") {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    0
}

/// The package pip names when a download or build fails (hash mismatch, build error).
pub fn failed_package(lines: &[String]) -> Option<String> {
    for line in lines {
        let l = line.trim();
        // pip: "markupsafe==3.0.2 from https://…: Expected sha256 …" (hash mismatch)
        if l.contains("Expected sha256") || l.contains("from file://") && l.contains("sha256") {
            return l.split_whitespace().next().map(str::to_string);
        }
        // uv: "× Failed to build `fastsum==1.0`" / "… `fastsum @ file:///…`"
        if let Some((_, rest)) = l.split_once("Failed to build `") {
            let spec = rest.split('`').next().unwrap_or(rest);
            let name = spec
                .split([' ', '=', '<', '>', '~', '!', '@', '[', ';'])
                .next();
            return name.filter(|n| !n.is_empty()).map(str::to_string);
        }
        // pip: "Failed to build fastsum" / "ERROR: Failed building wheel for fastsum"
        if let Some(n) = l
            .strip_prefix("ERROR: Failed building wheel for ")
            .or_else(|| l.strip_prefix("Failed to build "))
        {
            return Some(n.trim().to_string());
        }
    }
    None
}

/// The compiler's error lines (`error:`), else the tail of the output.
pub fn compiler_errors(lines: &[String]) -> String {
    let errors: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.contains("error:") || l.contains("Error:"))
        .take(20)
        .collect();
    if errors.is_empty() {
        lines
            .iter()
            .rev()
            .take(30)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        errors.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn names_the_package_pip_or_uv_failed_to_build() {
        let uv = lines("  × Failed to build `brokenpkg @ file:///w/vendor/brokenpkg-1.0.tar.gz`\n  ├─▶ The build backend returned an error");
        assert_eq!(failed_package(&uv).as_deref(), Some("brokenpkg"));
        let uv = lines("  × Failed to build `fastsum==1.0`");
        assert_eq!(failed_package(&uv).as_deref(), Some("fastsum"));
        let pip = lines("ERROR: Failed building wheel for vecmath");
        assert_eq!(failed_package(&pip).as_deref(), Some("vecmath"));
    }

    #[test]
    fn parses_pip_wheel_output() {
        let r = parse_pip_wheel(&lines(
            "Processing ./vendor/pytest-9.2.0-py3-none-any.whl\n\
             Saved /w/wheelhouse/pytest-9.2.0-py3-none-any.whl\n\
               File was already downloaded /w/wheelhouse/six-1.16.0-py2.py3-none-any.whl\n\
               Created wheel for fastsum: filename=fastsum-1.0-cp311-cp311-linux_x86_64.whl size=9 sha256=ab\n\
             Successfully built fastsum vecmath\n",
        ));
        assert_eq!(r.built, vec!["fastsum", "vecmath"]);
        assert_eq!(r.reused, 1);
        assert!(r.used.contains("fastsum-1.0-cp311-cp311-linux_x86_64.whl"));
        assert!(r.used.contains("pytest-9.2.0-py3-none-any.whl"));
        assert!(r.used.contains("six-1.16.0-py2.py3-none-any.whl"));
    }

    #[test]
    fn parses_install_counts() {
        assert_eq!(
            parse_installed(&lines("Successfully installed a-1 b-2 c-3")),
            3
        );
        assert_eq!(
            parse_installed(&lines("Resolved 9 packages\nInstalled 9 packages in 12ms")),
            9
        );
    }
}
