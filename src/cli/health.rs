//! `ecs-reconciler health [--url URL]`: probes `/livez` of a running `run` and exits 0 when it
//! answers 200, 1 otherwise (with one line saying why), so a container health check needs no
//! curl. The default URL is `listen` of the configuration (`0.0.0.0` and `::` probed on the
//! loopback address).
//!
//! The request is a plain HTTP/1.1 GET over a tokio TCP stream: the endpoints serve plain HTTP
//! on a local address, and nothing more is needed to read a status line.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the whole probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of an answer read (status line, headers and a short body).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The URL to probe [default: http://LISTEN/livez, LISTEN from the configuration].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// An HTTP answer: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// The `/livez` URL of a `listen` address.
pub fn default_url(listen: &str) -> String {
    let host = match listen.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        _ => listen.to_string(),
    };
    format!("http://{host}/livez")
}

/// Splits `http://HOST:PORT/PATH` into the address to connect to and the path.
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http://HOST:PORT/PATH URLs are probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(format!(
            "--url {url:?}: needs HOST:PORT, e.g. http://127.0.0.1:9090/livez"
        ));
    }
    Ok((authority.to_string(), path.to_string()))
}

/// GETs `url`, within [`PROBE_TIMEOUT`]. The error is one line.
pub async fn get(url: &str) -> Result<Answer, String> {
    let (authority, path) = split_url(url)?;
    tokio::time::timeout(PROBE_TIMEOUT, exchange(&authority, &path))
        .await
        .map_err(|_| {
            format!(
                "{url}: no answer within {}",
                humantime::format_duration(PROBE_TIMEOUT)
            )
        })?
        .map_err(|e| format!("{url}: {e}"))
}

async fn exchange(authority: &str, path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(authority).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    while answer.len() < MAX_ANSWER {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    parse_answer(&String::from_utf8_lossy(&answer))
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// The status and body of an HTTP/1.1 answer read to its end (`Connection: close`).
fn parse_answer(text: &str) -> Option<Answer> {
    let status_line = text.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_string()
    };
    Some(Answer { status, body })
}

/// The body of a chunked answer.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..size), rest.get(size..)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}

/// Probes the URL: exit 0 on a 200, else 1 with one line on standard error.
pub async fn health(args: HealthArgs, listen: &str) -> ExitCode {
    let url = args.url.unwrap_or_else(|| default_url(listen));
    match get(&url).await {
        Ok(answer) if answer.status == 200 => ExitCode::SUCCESS,
        Ok(answer) => {
            eprintln!(
                "error: {url}: {} {}",
                answer.status,
                answer.body.lines().next().unwrap_or_default()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
