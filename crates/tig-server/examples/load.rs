//! A tiny HTTP/1.1 keep-alive load generator for BENCHMARKS.md (no wrk here).
//!
//! `cargo run --release -p tig-server --example load -- URL CONNECTIONS SECONDS [get|put]`
//! GET fetches URL repeatedly; PUT sends a fresh 1 KiB body to URL each time.
//! Prints requests per second and the number of non-200 answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .ok_or("usage: load URL CONNS SECONDS [get|put]")?;
    let conns: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let secs: u64 = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let put = args.get(4).is_some_and(|m| m == "put");
    let rest = url.strip_prefix("http://").ok_or("http:// only")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path }.to_owned();
    let host = host.to_owned();
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (host, path, ok, bad, seq) = (
            host.clone(),
            path.clone(),
            ok.clone(),
            bad.clone(),
            seq.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&host).await?;
            stream.set_nodelay(true)?;
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            let mut body = Vec::new();
            while Instant::now() < deadline {
                let req = if put {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let mut payload = format!("{n:016}").into_bytes();
                    payload.resize(1024, b'x');
                    let mut req = format!(
                        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
                        payload.len()
                    )
                    .into_bytes();
                    req.extend_from_slice(&payload);
                    req
                } else {
                    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
                };
                w.write_all(&req).await?;
                line.clear();
                r.read_line(&mut line).await?;
                let status_ok = line.split(' ').nth(1) == Some("200");
                let mut len = 0usize;
                loop {
                    line.clear();
                    r.read_line(&mut line).await?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse()?;
                    }
                }
                body.resize(len, 0);
                r.read_exact(&mut body).await?;
                if status_ok { &ok } else { &bad }.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for t in tasks {
        if let Err(e) = t.await? {
            eprintln!("connection failed: {e}");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{} {conns} conns: {:.0} req/s ({n} ok, {} not 200) in {elapsed:.1}s",
        if put { "PUT" } else { "GET" },
        n as f64 / elapsed,
        bad.load(Ordering::Relaxed)
    );
    Ok(())
}
