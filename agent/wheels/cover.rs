//! Which wheels of a wheelhouse are the pinned distributions of a requirement set, and which
//! pins none of them is.

use std::collections::BTreeSet;

use super::names::{normalize, Version, WheelName};

/// The wheels of `wheels` (file names) that are the pinned distributions of `pins`
/// (`name==version` lines), and the pins none of them is.
#[derive(Debug, Default, PartialEq)]
pub struct Covered {
    pub wheels: BTreeSet<String>,
    pub missing: Vec<String>,
}

/// Match `pins` to `wheels` by PEP 503 name and PEP 440 version.
pub fn covered_by(pins: &str, wheels: &BTreeSet<String>) -> Covered {
    let parsed: Vec<WheelName> = wheels.iter().filter_map(|w| WheelName::parse(w)).collect();
    let mut out = Covered::default();
    for pin in pins.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, version)) = pin.split_once("==") else {
            continue;
        };
        let (name, version) = (normalize(name), Version::parse(version));
        let matching: Vec<&WheelName> = parsed
            .iter()
            .filter(|w| w.project == name && Version::parse(&w.version) == version)
            .collect();
        if matching.is_empty() {
            out.missing.push(pin.to_string());
        }
        out.wheels
            .extend(matching.into_iter().map(|w| w.filename.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_matched_to_wheels_by_normalized_name_and_version() {
        let wheels: BTreeSet<String> = [
            "zope_interface-6.4.post2-cp311-cp311-linux_x86_64.whl",
            "MarkupSafe-3.0.2-cp311-cp311-linux_x86_64.whl",
            "pytest-9.2.0-py3-none-any.whl",
            "pytest-9.1.0-py3-none-any.whl",
            "notes.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = covered_by(
            "zope.interface==6.4.post2\nmarkupsafe==3.0.2\npytest==9.2.0\npluggy==1.7.0\n",
            &wheels,
        );
        assert_eq!(c.missing, vec!["pluggy==1.7.0"]);
        assert_eq!(
            c.wheels.into_iter().collect::<Vec<_>>(),
            [
                "MarkupSafe-3.0.2-cp311-cp311-linux_x86_64.whl",
                "pytest-9.2.0-py3-none-any.whl",
                "zope_interface-6.4.post2-cp311-cp311-linux_x86_64.whl"
            ]
        );
        assert!(covered_by("", &wheels).missing.is_empty());
    }
}
