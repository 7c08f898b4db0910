//! Sizes as people write them on the command line, in `KILN_*` and in kiln.yml: `20G`, `500M`,
//! `25MiB`, `1.5k`, `1024`. One rule everywhere: every unit is binary, so `K`, `KB` and `KiB`
//! all mean 1024 bytes (and `M`, `G`, `T` the next powers of 1024).

/// Bytes in `s`, or an error saying what a size looks like.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 500M, 5G or 25MiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use K, M, G or T; all are powers of 1024)"
            ))
        }
    };
    let bytes = n * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// [`parse_size`] for sizes held in memory (`usize`).
pub fn parse_size_usize(s: &str) -> Result<usize, String> {
    parse_size(s).and_then(|n| usize::try_from(n).map_err(|_| format!("{s:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_binary() {
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("5G").unwrap(), 5 << 30);
        assert_eq!(parse_size("25MiB").unwrap(), 25 << 20);
        assert_eq!(parse_size("1MB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size(" 42 ").unwrap(), 42);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        assert!(parse_size("5X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size_usize("25MiB").is_ok());
    }
}
