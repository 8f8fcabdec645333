//! A small HTTPS client for the providers: hyper over rustls with the `ring` provider and the
//! Mozilla roots, HTTP/1.1, no redirects (a provider answering with one is misconfigured), one
//! deadline per request including the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Http {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("timed out")]
    Timeout,
    #[error("cannot connect")]
    Connect,
    #[error("invalid request: {0}")]
    Request(String),
    #[error("HTTP exchange failed")]
    Exchange,
}

/// The connector every outbound client of Hearth uses (providers here, S3 in hearth-documents):
/// rustls with the `ring` provider and the Mozilla roots, `http://` allowed for local peers,
/// HTTP/1.1.
pub fn https_connector() -> Result<hyper_rustls::HttpsConnector<HttpConnector>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build())
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Http, String> {
        Ok(Http { client: Client::builder(TokioExecutor::new()).build(https_connector()?), timeout })
    }

    /// Sends `method url` with `headers` and `body`.
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| HttpError::Request(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| if e.is_connect() { HttpError::Connect } else { HttpError::Exchange })?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|_| HttpError::Exchange)?.to_bytes();
            Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| HttpError::Timeout)?
    }

    /// `POST` of an `application/x-www-form-urlencoded` body.
    pub async fn post_form(
        &self,
        url: &str,
        headers: &[(&str, String)],
        form: &[(&str, &str)],
    ) -> Result<Response, HttpError> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut h = headers.to_vec();
        h.push(("content-type", "application/x-www-form-urlencoded".into()));
        self.send(http::Method::POST, url, &h, body.into_bytes()).await
    }

    /// `POST` of a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        json: &serde_json::Value,
    ) -> Result<Response, HttpError> {
        let mut h = headers.to_vec();
        h.push(("content-type", "application/json".into()));
        self.send(http::Method::POST, url, &h, json.to_string().into_bytes()).await
    }
}

/// `Basic` credentials.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes()))
}
