//! The signed Azure blob URLs the cache service hands out: uploads as a block blob (`PUT
//! ?comp=block&blockid=…` per block, several at once, then `PUT ?comp=blocklist` naming them in
//! order), downloads as a plain `GET`. The URL carries its own signature: no token is sent.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::GhaError;

/// Azure's REST version sent with every blob request.
const MS_VERSION: &str = "2024-11-04";

/// What is uploaded: a local file (read block by block) or bytes in memory.
#[derive(Clone)]
pub enum Source {
    File(Arc<std::fs::File>, u64),
    Memory(Bytes),
}

impl Source {
    pub fn size(&self) -> u64 {
        match self {
            Source::File(_, n) => *n,
            Source::Memory(b) => b.len() as u64,
        }
    }

    async fn block(&self, offset: u64, len: usize) -> Result<Bytes, GhaError> {
        match self {
            Source::Memory(b) => Ok(b.slice(offset as usize..offset as usize + len)),
            Source::File(f, _) => {
                let f = f.clone();
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, offset).map(|_| Bytes::from(buf))
                })
                .await
                .map_err(|e| GhaError::Local(e.to_string()))?
                .map_err(|e| GhaError::Local(format!("reading the archive: {e}")))
            }
        }
    }
}

/// How blocks are sent.
#[derive(Debug, Clone)]
pub struct BlobSettings {
    pub block_size: u64,
    pub concurrency: usize,
    /// Tries per block request (a cut connection is sent again).
    pub attempts: u32,
    pub retry_delay: std::time::Duration,
}

/// The id of block `i`: base64 of a fixed-length name (Azure wants equal-length ids).
pub fn block_id(i: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("kiln-block-{i:010}"))
}

fn with_query(url: &url::Url, pairs: &[(&str, &str)]) -> url::Url {
    let mut u = url.clone();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    u
}

/// Upload `source` to the signed URL as a block blob; `progress` hears the bytes sent so far.
pub async fn upload(
    http: &reqwest::Client,
    url: &url::Url,
    source: Source,
    settings: &BlobSettings,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), GhaError> {
    let size = source.size();
    let block = settings.block_size.max(1);
    let count = size.div_ceil(block).max(1);
    let sent = std::sync::atomic::AtomicU64::new(0);
    futures::stream::iter(0..count)
        .map(|i| {
            let source = source.clone();
            let sent = &sent;
            async move {
                let offset = i * block;
                let len = block.min(size - offset) as usize;
                let data = source.block(offset, len).await?;
                let u = with_query(url, &[("comp", "block"), ("blockid", &block_id(i))]);
                put(http, &u, data, "", settings).await?;
                let now = sent.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                progress(now + len as u64);
                Ok::<_, GhaError>(())
            }
        })
        .buffer_unordered(settings.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
    for i in 0..count {
        xml.push_str(&format!("<Latest>{}</Latest>", block_id(i)));
    }
    xml.push_str("</BlockList>");
    let u = with_query(url, &[("comp", "blocklist")]);
    put(http, &u, Bytes::from(xml), "application/xml", settings).await
}

/// One `PUT`, tried again when the connection fails or the server answers 5xx/429.
async fn put(
    http: &reqwest::Client,
    url: &url::Url,
    body: Bytes,
    content_type: &str,
    settings: &BlobSettings,
) -> Result<(), GhaError> {
    let mut delay = settings.retry_delay;
    let mut attempt = 1;
    loop {
        let mut req = http
            .put(url.clone())
            .header("x-ms-version", MS_VERSION)
            .body(body.clone());
        if !content_type.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let err = match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => GhaError::Blob {
                op: "upload",
                status: Some(r.status().as_u16()),
                message: azure_message(r).await,
            },
            Err(e) => GhaError::Blob {
                op: "upload",
                status: None,
                message: super::error_chain(&e),
            },
        };
        if attempt >= settings.attempts || !err.is_transient() {
            return Err(err);
        }
        tracing::debug!(attempt, error = %err, "blob upload request failed; retrying");
        tokio::time::sleep(delay).await;
        delay *= 2;
        attempt += 1;
    }
}

/// Azure's error code (`x-ms-error-code`) or the status text.
async fn azure_message(r: reqwest::Response) -> String {
    let code = r
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = r.status();
    code.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string())
}

/// Send a request to a signed blob URL; a transport error or a non-2xx answer is `op`'s error.
async fn send_ok(
    op: &'static str,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, GhaError> {
    let resp = req
        .header("x-ms-version", MS_VERSION)
        .send()
        .await
        .map_err(|e| GhaError::Blob {
            op,
            status: None,
            message: super::error_chain(&e),
        })?;
    if !resp.status().is_success() {
        return Err(GhaError::Blob {
            op,
            status: Some(resp.status().as_u16()),
            message: azure_message(resp).await,
        });
    }
    Ok(resp)
}

/// The blob's bytes as a stream (plain `GET` on the signed URL).
pub async fn download(
    http: &reqwest::Client,
    url: &str,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<Bytes>>, GhaError> {
    let resp = send_ok("download", http.get(url)).await?;
    Ok(resp
        .bytes_stream()
        .map_err(|e| std::io::Error::other(super::error_chain(&e)))
        .boxed())
}

/// The blob's size (`HEAD` on the signed URL).
pub async fn size(http: &reqwest::Client, url: &str) -> Result<u64, GhaError> {
    let resp = send_ok("stat", http.head(url)).await?;
    Ok(resp
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_equal_length_and_order() {
        let a = block_id(0);
        let b = block_id(12345);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        let u = url::Url::parse("http://h/c/b?sv=1&sig=x%2By").unwrap();
        let q = with_query(&u, &[("comp", "block"), ("blockid", &a)]);
        assert!(q
            .as_str()
            .starts_with("http://h/c/b?sv=1&sig=x%2By&comp=block&blockid="));
    }
}
