//! A wheel's core metadata (`*.dist-info/METADATA`), read straight from the zip at publish time.
//!
//! With it the index can serve PEP 658 metadata files (pip and uv resolve from a few KB instead
//! of downloading every candidate wheel) and `requires-python`, so a client on an older Python
//! skips a wheel that does not support it instead of failing at install. Only what wheels use is
//! read: the zip central directory, stored or deflated entries, no zip64 (a wheel over 4 GiB
//! simply gets no metadata file).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// METADATA bigger than this is not served (real ones are a few KB; a README can make them
/// a few hundred).
const MAX_METADATA: u64 = 8 * 1024 * 1024;

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The bytes of the wheel's top-level `<name>.dist-info/METADATA`; `Ok(None)` when the file is
/// not a zip we can read or has no such entry.
pub fn read_metadata(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    // End of central directory: 22 bytes + a comment of up to 64 KiB, at the end.
    let tail_len = len.min(22 + 65535);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail)?;
    let Some(eocd) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(0x0605_4b50))
    else {
        return Ok(None);
    };
    let (Some(entries), Some(cd_size), Some(cd_offset)) = (
        u16_at(&tail, eocd + 10),
        u32_at(&tail, eocd + 12),
        u32_at(&tail, eocd + 16),
    ) else {
        return Ok(None);
    };
    if cd_offset == u32::MAX || u64::from(cd_offset) + u64::from(cd_size) > len {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(cd_offset.into()))?;
    let mut cd = vec![0u8; cd_size as usize];
    f.read_exact(&mut cd)?;
    let mut i = 0usize;
    for _ in 0..entries {
        if u32_at(&cd, i) != Some(0x0201_4b50) {
            return Ok(None);
        }
        let (
            Some(method),
            Some(csize),
            Some(usize_),
            Some(nlen),
            Some(elen),
            Some(clen),
            Some(off),
        ) = (
            u16_at(&cd, i + 10),
            u32_at(&cd, i + 20),
            u32_at(&cd, i + 24),
            u16_at(&cd, i + 28),
            u16_at(&cd, i + 30),
            u16_at(&cd, i + 32),
            u32_at(&cd, i + 42),
        )
        else {
            return Ok(None);
        };
        let name_start = i + 46;
        let Some(name) = cd.get(name_start..name_start + nlen as usize) else {
            return Ok(None);
        };
        let is_metadata = std::str::from_utf8(name).is_ok_and(|n| {
            n.strip_suffix("/METADATA")
                .is_some_and(|dir| dir.ends_with(".dist-info") && !dir.contains('/'))
        });
        if is_metadata {
            if u64::from(usize_) > MAX_METADATA || u64::from(csize) > MAX_METADATA {
                return Ok(None);
            }
            return read_entry(&mut f, off.into(), method, csize.into(), usize_.into());
        }
        i = name_start + nlen as usize + elen as usize + clen as usize;
    }
    Ok(None)
}

fn read_entry(
    f: &mut std::fs::File,
    local_offset: u64,
    method: u16,
    csize: u64,
    usize_: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    f.seek(SeekFrom::Start(local_offset))?;
    let mut header = [0u8; 30];
    f.read_exact(&mut header)?;
    let (Some(sig), Some(nlen), Some(elen)) =
        (u32_at(&header, 0), u16_at(&header, 26), u16_at(&header, 28))
    else {
        return Ok(None);
    };
    if sig != 0x0403_4b50 {
        return Ok(None);
    }
    f.seek(SeekFrom::Current(i64::from(nlen) + i64::from(elen)))?;
    let mut data = vec![0u8; csize as usize];
    f.read_exact(&mut data)?;
    let out = match method {
        0 => data,
        8 => {
            let mut out = Vec::with_capacity(usize_ as usize);
            flate2::read::DeflateDecoder::new(&data[..])
                .take(MAX_METADATA + 1)
                .read_to_end(&mut out)?;
            out
        }
        _ => return Ok(None),
    };
    Ok((out.len() as u64 == usize_).then_some(out))
}

/// The `Requires-Python` header of a METADATA file, if any.
pub fn requires_python(metadata: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(metadata);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("requires-python")
                .then(|| v.trim().to_string())
        })
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requires_python_header() {
        let m = b"Metadata-Version: 2.1\nName: a\nRequires-Python: >=3.8, <4\n\nRequires-Python: body\n";
        assert_eq!(requires_python(m).as_deref(), Some(">=3.8, <4"));
        assert_eq!(requires_python(b"Name: a\n"), None);
    }

    /// Zips written by Python's zipfile (what wheel builders use), stored and deflated, with a
    /// nested decoy that must be ignored.
    #[test]
    fn reads_metadata_from_real_zips() {
        let d = tempfile::tempdir().unwrap();
        for (name, method) in [
            ("stored.whl", "ZIP_STORED"),
            ("deflated.whl", "ZIP_DEFLATED"),
        ] {
            let p = d.path().join(name);
            let script = format!(
                "import zipfile, sys\n\
                 z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.{method})\n\
                 z.writestr('demo/__init__.py', 'x = 1\\n' * 500)\n\
                 z.writestr('demo/vendored.dist-info/METADATA', 'Name: decoy\\n')\n\
                 z.writestr('demo-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: demo\\nRequires-Python: >=3.9\\n\\n' + 'long description\\n' * 200)\n\
                 z.writestr('demo-1.0.dist-info/RECORD', '')\n\
                 z.close()\n"
            );
            let ok = std::process::Command::new("python3")
                .args(["-c", &script])
                .arg(&p)
                .status()
                .unwrap()
                .success();
            assert!(ok);
            let m = read_metadata(&p).unwrap().expect(name);
            let text = String::from_utf8(m).unwrap();
            assert!(
                text.starts_with("Metadata-Version: 2.1\nName: demo\n"),
                "{name}"
            );
            assert!(text.ends_with("long description\n"), "{name}");
            assert_eq!(requires_python(text.as_bytes()).as_deref(), Some(">=3.9"));
        }
    }

    #[test]
    fn not_a_zip_has_no_metadata() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.whl");
        std::fs::write(&p, b"not a zip at all").unwrap();
        assert_eq!(read_metadata(&p).unwrap(), None);
    }
}
