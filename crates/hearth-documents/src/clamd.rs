//! The virus-scan hook: an upload's plaintext streamed to clamd with its `INSTREAM` command
//! (`zINSTREAM\0`, then chunks each prefixed by their length as a 4-byte big-endian number, a
//! zero length to end; clamd answers `stream: OK` or `stream: <name> FOUND`), over TCP or a
//! unix socket. Failing closed: when clamd is configured and cannot answer, the upload is refused.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::blob::ByteStream;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(std::path::PathBuf),
}

impl Address {
    /// `tcp:HOST:PORT` or `unix:/path`.
    pub fn parse(s: &str) -> Result<Address, String> {
        if let Some(hp) = s.strip_prefix("tcp:") {
            let ok = hp.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            return if ok {
                Ok(Address::Tcp(hp.to_owned()))
            } else {
                Err("documents.clamd: expected tcp:HOST:PORT".into())
            };
        }
        if let Some(path) = s.strip_prefix("unix:").filter(|p| p.starts_with('/')) {
            return Ok(Address::Unix(path.into()));
        }
        Err("documents.clamd must be tcp:HOST:PORT or unix:/absolute/path".into())
    }
}

/// What clamd said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature's name.
    Infected(String),
}

/// Streams `content` to clamd at `addr` and reads its verdict (at most `deadline` in all).
pub async fn scan(addr: &Address, content: ByteStream, deadline: Duration) -> Result<Verdict, String> {
    let work = async {
        match addr {
            Address::Tcp(hp) => {
                let conn = tokio::net::TcpStream::connect(hp.as_str())
                    .await
                    .map_err(|e| format!("cannot reach clamd: {e}"))?;
                exchange(conn, content).await
            }
            #[cfg(unix)]
            Address::Unix(path) => {
                let conn =
                    tokio::net::UnixStream::connect(path).await.map_err(|e| format!("cannot reach clamd: {e}"))?;
                exchange(conn, content).await
            }
            #[cfg(not(unix))]
            Address::Unix(_) => Err("unix sockets are not available on this system".to_owned()),
        }
    };
    tokio::time::timeout(deadline, work).await.map_err(|_| "clamd did not answer in time".to_owned())?
}

async fn exchange<C: AsyncRead + AsyncWrite + Unpin>(mut conn: C, mut content: ByteStream) -> Result<Verdict, String> {
    let io = |e: std::io::Error| format!("clamd exchange failed: {e}");
    conn.write_all(b"zINSTREAM\0").await.map_err(io)?;
    while let Some(chunk) = content.next().await {
        let chunk = chunk.map_err(|e| format!("reading the upload to scan: {e}"))?;
        for part in chunk.chunks(64 * 1024) {
            let len = u32::try_from(part.len()).map_err(|_| "chunk too long".to_owned())?;
            conn.write_all(&len.to_be_bytes()).await.map_err(io)?;
            conn.write_all(part).await.map_err(io)?;
        }
    }
    conn.write_all(&0u32.to_be_bytes()).await.map_err(io)?;
    conn.flush().await.map_err(io)?;
    let mut reply = Vec::new();
    (&mut conn).take(4096).read_to_end(&mut reply).await.map_err(io)?;
    let reply = String::from_utf8_lossy(&reply);
    let reply = reply.trim_end_matches(['\0', '\n']).trim();
    let verdict = reply.strip_prefix("stream:").map(str::trim);
    match verdict {
        Some("OK") => Ok(Verdict::Clean),
        Some(found) if found.ends_with(" FOUND") => {
            Ok(Verdict::Infected(found.trim_end_matches(" FOUND").trim().to_owned()))
        }
        _ => Err(format!("clamd answered something else: {}", reply.chars().take(120).collect::<String>())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(Address::parse("tcp:127.0.0.1:3310").unwrap(), Address::Tcp("127.0.0.1:3310".into()));
        assert_eq!(
            Address::parse("unix:/run/clamav/clamd.ctl").unwrap(),
            Address::Unix("/run/clamav/clamd.ctl".into())
        );
        assert!(Address::parse("tcp:nohost").is_err());
        assert!(Address::parse("unix:relative").is_err());
        assert!(Address::parse("clamd").is_err());
    }
}
