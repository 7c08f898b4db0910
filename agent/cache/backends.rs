//! Building an OpenDAL operator for each remote store URL (`gha` is not OpenDAL: see
//! [`super::gha`]).
//!
//! Settings come from the URL (bucket, prefix, query parameters) and the environment variables
//! each platform's own tools use, so a CI job that can already reach its bucket needs nothing
//! more. Credentials are read here and handed to OpenDAL only: never put in the URL we log.
//!
//! | URL                                 | settings                                               |
//! |-------------------------------------|--------------------------------------------------------|
//! | `s3://bucket/prefix`                | `KILN_S3_ENDPOINT` / `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; query `endpoint=`, `region=`, `virtual_host=true`, `anonymous=true` |
//! | `webdav+http(s)://[user:pass@]host/path` | `KILN_WEBDAV_USER`, `KILN_WEBDAV_PASSWORD`, `KILN_WEBDAV_TOKEN` |
//! | `azblob://container/prefix`         | `AZURE_STORAGE_ACCOUNT`, `AZURE_STORAGE_KEY`, `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT` |
//! | `gcs://bucket/prefix`               | `GOOGLE_APPLICATION_CREDENTIALS`, `KILN_GCS_ENDPOINT`  |

use opendal::layers::TimeoutLayer;
use opendal::Operator;
use std::time::Duration;

use crate::settings::names;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn first(env: Env, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()))
}

fn query(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.to_string())
}

fn truthy(v: Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "yes" | "on"))
}

/// `/prefix/` → `/prefix` root for OpenDAL (always absolute).
fn root_of(path: &str) -> String {
    let p = path.trim_matches('/');
    if p.is_empty() {
        "/".into()
    } else {
        format!("/{p}")
    }
}

/// Slow or dead servers must not hang a build: every operation has a deadline of
/// `KILN_STORE_TIMEOUT` (default 5 s; a server that accepts the connection and never answers
/// fails there), and every chunk of a transfer three times that (a link that stalls longer needs a
/// larger value). Retries are not added here: `Store::retry`
/// holds the one retry budget of each operation.
fn timeouts(t: Duration) -> TimeoutLayer {
    TimeoutLayer::new().with_timeout(t).with_io_timeout(t * 3)
}

/// The operator for a non-`file://` URL. Errors are messages without credentials.
pub(super) fn remote_operator(url: &str, env: Env, timeout: Duration) -> Result<Operator, String> {
    // The HTTP transport (reqwest) every remote service sends through; once per process.
    opendal::install_default();
    let u = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let op = match u.scheme() {
        "s3" => s3(&u, env)?,
        "webdav+http" | "webdav+https" => webdav(&u, env)?,
        "azblob" => azblob(&u, env)?,
        "gcs" | "gs" => gcs(&u, env)?,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (expected file://, s3://, gha, webdav+https://, azblob://, gcs://)"
            ))
        }
    };
    Ok(op.layer(timeouts(timeout)))
}

fn host(u: &url::Url, what: &str) -> Result<String, String> {
    u.host_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("missing {what} name (e.g. {}://NAME/prefix)", u.scheme()))
}

fn s3(u: &url::Url, env: Env) -> Result<Operator, String> {
    let bucket = host(u, "bucket")?;
    let mut b = opendal::services::S3::default()
        .bucket(&bucket)
        .root(&root_of(u.path()));
    let endpoint = query(u, "endpoint").or_else(|| {
        first(
            env,
            &[
                names::S3_ENDPOINT,
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
            ],
        )
    });
    if let Some(ep) = endpoint {
        b = b.endpoint(&ep);
    }
    let region = query(u, "region")
        .or_else(|| first(env, &[names::S3_REGION, "AWS_REGION", "AWS_DEFAULT_REGION"]))
        .unwrap_or_else(|| "us-east-1".into());
    b = b.region(&region);
    if let Some(k) = first(env, &["AWS_ACCESS_KEY_ID"]) {
        b = b.access_key_id(&k);
    }
    if let Some(s) = first(env, &["AWS_SECRET_ACCESS_KEY"]) {
        b = b.secret_access_key(&s);
    }
    if let Some(t) = first(env, &["AWS_SESSION_TOKEN"]) {
        b = b.session_token(&t);
    }
    if truthy(query(u, "virtual_host")) || truthy(env(names::S3_VIRTUAL_HOST)) {
        b = b.enable_virtual_host_style();
    }
    if truthy(query(u, "anonymous")) {
        b = b.skip_signature();
    }
    Operator::new(b).map_err(|e| e.to_string())
}

fn webdav(u: &url::Url, env: Env) -> Result<Operator, String> {
    let scheme = u.scheme().trim_start_matches("webdav+");
    let host = host(u, "host")?;
    let endpoint = match u.port() {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    let mut b = opendal::services::Webdav::default()
        .endpoint(&endpoint)
        .root(&root_of(u.path()));
    let user = (!u.username().is_empty())
        .then(|| percent_decode(u.username()))
        .or_else(|| first(env, &[names::WEBDAV_USER]));
    let password = u
        .password()
        .map(percent_decode)
        .or_else(|| first(env, &[names::WEBDAV_PASSWORD]));
    if let Some(user) = user {
        b = b.username(&user);
    }
    if let Some(p) = password {
        b = b.password(&p);
    }
    if let Some(t) = first(env, &[names::WEBDAV_TOKEN]) {
        b = b.token(&t);
    }
    Operator::new(b).map_err(|e| e.to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn azblob(u: &url::Url, env: Env) -> Result<Operator, String> {
    let container = host(u, "container")?;
    let account = first(
        env,
        &["AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME"],
    );
    let endpoint = query(u, "endpoint")
        .or_else(|| first(env, &["AZURE_STORAGE_ENDPOINT"]))
        .or_else(|| {
            account
                .as_ref()
                .map(|a| format!("https://{a}.blob.core.windows.net"))
        })
        .ok_or("set AZURE_STORAGE_ACCOUNT (or AZURE_STORAGE_ENDPOINT)")?;
    let mut b = opendal::services::Azblob::default()
        .container(&container)
        .root(&root_of(u.path()))
        .endpoint(&endpoint);
    if let Some(a) = &account {
        b = b.account_name(a);
    }
    if let Some(k) = first(env, &["AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCESS_KEY"]) {
        b = b.account_key(&k);
    }
    if let Some(s) = first(env, &["AZURE_STORAGE_SAS_TOKEN"]) {
        b = b.sas_token(&s);
    }
    Operator::new(b).map_err(|e| e.to_string())
}

fn gcs(u: &url::Url, env: Env) -> Result<Operator, String> {
    let bucket = host(u, "bucket")?;
    let mut b = opendal::services::Gcs::default()
        .bucket(&bucket)
        .root(&root_of(u.path()));
    if let Some(ep) = query(u, "endpoint").or_else(|| first(env, &[names::GCS_ENDPOINT])) {
        b = b.endpoint(&ep);
    }
    if let Some(p) = first(env, &["GOOGLE_APPLICATION_CREDENTIALS"]) {
        b = b.credential_path(&p);
    }
    if truthy(query(u, "anonymous")) {
        b = b.skip_signature();
    }
    Operator::new(b).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| v.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
    }

    #[test]
    fn every_scheme_builds() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AZURE_STORAGE_ACCOUNT", "acct"),
            ("AZURE_STORAGE_KEY", "a2V5"),
        ]);
        for url in [
            "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1",
            "webdav+http://bob:pw@127.0.0.1:8080/dav/kiln",
            "webdav+https://dav.example/kiln",
            "azblob://container/prefix",
            "gcs://bucket/prefix?anonymous=true",
        ] {
            let op = remote_operator(url, &env, Duration::from_secs(5));
            assert!(op.is_ok(), "{url}: {:?}", op.err());
        }
        assert!(remote_operator("s3:///nobucket", &env, Duration::from_secs(5)).is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
