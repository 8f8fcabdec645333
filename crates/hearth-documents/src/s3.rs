//! S3-compatible object storage: path-style requests (`<endpoint>/<bucket>/<key>`) signed with
//! AWS Signature Version 4, over hyper + rustls (ring) and the Mozilla roots. Uploads stream
//! the staged file with its SHA-256 signed (`x-amz-content-sha256`); downloads stream the
//! answer. One `PUT` per blob, so a blob is at most 5 GiB (S3's single-upload limit).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::blob::{BlobError, BlobStore, ByteStream};
use hearth_workflow::Secret;

/// The `[documents.s3]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`, … (no trailing `/`).
    pub endpoint: String,
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    /// Prepended to every object key (e.g. `hearth/`).
    #[serde(default)]
    pub prefix: String,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl S3Config {
    pub fn check(&self) -> Result<(), String> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://"))
            || self.endpoint.ends_with('/')
        {
            return Err("documents.s3.endpoint must start with http:// or https:// and not end with '/'".into());
        }
        let ok_bucket = (3..=63).contains(&self.bucket.len())
            && self.bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !ok_bucket {
            return Err("documents.s3.bucket must be an S3 bucket name (3 to 63 of a-z, 0-9, '-', '.')".into());
        }
        if self.access_key_id.is_empty() || self.secret_access_key.expose().is_empty() || self.region.is_empty() {
            return Err("documents.s3 needs access_key_id, secret_access_key and region".into());
        }
        Ok(())
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

/// An S3 bucket as a [`BlobStore`].
pub struct S3Blobs {
    config: S3Config,
    host: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// The longest wait for an answer's headers (bodies stream without a deadline).
    timeout: Duration,
}

/// Unreserved characters stay; everything else in a path segment is percent-encoded (SigV4).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl S3Blobs {
    pub fn new(config: S3Config) -> Result<S3Blobs, String> {
        config.check()?;
        let host = config
            .endpoint
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_owned())
            .unwrap_or_default();
        let https = hearth_notify::http::https_connector()?;
        Ok(S3Blobs {
            config,
            host,
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout: Duration::from_secs(60),
        })
    }

    fn path(&self, key: &str) -> String {
        let full = format!("{}{}", self.config.prefix, key);
        let mut path = format!("/{}", utf8_percent_encode(&self.config.bucket, SEGMENT));
        for segment in full.split('/') {
            path.push('/');
            path.push_str(&utf8_percent_encode(segment, SEGMENT).to_string());
        }
        path
    }

    /// Sends a signed request; `extra` headers are signed too.
    async fn send(
        &self,
        method: http::Method,
        key: &str,
        extra: &[(&str, String)],
        payload_sha256: &str,
        body: Body,
    ) -> Result<http::Response<hyper::body::Incoming>, BlobError> {
        let path = self.path(key);
        let now = chrono::Utc::now();
        let headers = sign(&self.config, &self.host, &method, &path, extra, payload_sha256, now);
        let mut req = http::Request::builder().method(method).uri(format!("{}{}", self.config.endpoint, path));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(body).map_err(|e| BlobError::Remote(e.to_string()))?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| BlobError::Remote("timed out waiting for object storage".into()))?
            .map_err(|e| BlobError::Remote(format!("cannot reach object storage: {e}")))?;
        Ok(resp)
    }
}

async fn refusal(resp: http::Response<hyper::body::Incoming>, what: &str) -> BlobError {
    let status = resp.status().as_u16();
    // S3's error bodies are short XML naming the code; never a document's content.
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let text = String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default()).into_owned();
    let code = text.split("<Code>").nth(1).and_then(|r| r.split("</Code>").next()).unwrap_or("").to_owned();
    BlobError::Remote(format!("{what}: object storage answered {status} {code}"))
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, path: &Path, len: u64, sha256_hex: &str) -> Result<(), BlobError> {
        let file = tokio::fs::File::open(path).await?;
        let frames = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map_ok(Frame::data);
        let body = BodyExt::boxed(StreamBody::new(frames));
        let extra = [("content-length", len.to_string()), ("content-type", "application/octet-stream".to_owned())];
        let resp = self.send(http::Method::PUT, key, &extra, sha256_hex, body).await?;
        if !resp.status().is_success() {
            return Err(refusal(resp, "storing a blob").await);
        }
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let resp = self.send(http::Method::HEAD, key, &[], EMPTY_SHA256, empty()).await?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(refusal(resp, "looking up a blob").await),
        }
    }

    async fn get(&self, key: &str, from: u64) -> Result<Option<ByteStream>, BlobError> {
        let extra: Vec<(&str, String)> = if from > 0 { vec![("range", format!("bytes={from}-"))] } else { Vec::new() };
        let resp = self.send(http::Method::GET, key, &extra, EMPTY_SHA256, empty()).await?;
        match resp.status().as_u16() {
            200 | 206 => {
                let stream = resp.into_body().into_data_stream().map_err(std::io::Error::other);
                Ok(Some(Box::pin(stream)))
            }
            // Asking from the very end of an object: nothing left to send.
            416 => Ok(Some(Box::pin(futures_util::stream::empty()))),
            404 => Ok(None),
            _ => Err(refusal(resp, "reading a blob").await),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let resp = self.send(http::Method::DELETE, key, &[], EMPTY_SHA256, empty()).await?;
        match resp.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            _ => Err(refusal(resp, "deleting a blob").await),
        }
    }
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes a key of any length.
        Err(_) => Vec::new(),
    }
}

fn hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(data)
}

/// The headers of a request signed with AWS Signature Version 4 (`host`, `x-amz-date`,
/// `x-amz-content-sha256`, `authorization`, and `extra`, all signed). The path is already
/// URI-encoded; there is no query string.
pub fn sign(
    config: &S3Config,
    host: &str,
    method: &http::Method,
    path: &str,
    extra: &[(&str, String)],
    payload_sha256: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.to_owned()),
        ("x-amz-content-sha256".into(), payload_sha256.to_owned()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned())));
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!("{method}\n{path}\n\n{canonical_headers}\n{signed}\n{payload_sha256}");
    let scope = format!("{date}/{}/s3/aws4_request", config.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let k_date = hmac(format!("AWS4{}", config.secret_access_key.expose()).as_bytes(), &date);
    let k_region = hmac(&k_date, &config.region);
    let k_service = hmac(&k_region, "s3");
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex(&hmac(&k_signing, &to_sign));
    headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            config.access_key_id
        ),
    ));
    // `host` is set by the client from the URI.
    headers.retain(|(k, _)| k != "host");
    headers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    /// The example "GET Object" of the AWS Signature Version 4 documentation for S3 (its
    /// published access key pair and expected signature).
    #[test]
    fn signs_the_documented_example() {
        let config = S3Config {
            endpoint: "https://examplebucket.s3.amazonaws.com".into(),
            bucket: "examplebucket".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            prefix: String::new(),
        };
        let now = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z").unwrap().to_utc();
        let headers = sign(
            &config,
            "examplebucket.s3.amazonaws.com",
            &http::Method::GET,
            "/test.txt",
            &[("range", "bytes=0-9".into())],
            EMPTY_SHA256,
            now,
        );
        let auth = headers.iter().find(|(k, _)| k == "authorization").unwrap().1.clone();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
