//! Test harness shared by the integration tests: start the real `tig serve`
//! binary on an ephemeral loopback port, wait for its readiness line, and talk to it.
//!
//! Black-box by design: everything goes through the `tig` binary and the HTTP
//! contract (`/work/briefs/server-contract.md`), never through library internals.
//! Each test binary uses a subset of these helpers, hence the `dead_code` allowances.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long `tig serve` may take to print its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of the server's stderr is kept for failure messages (the tail).
const STDERR_KEEP: usize = 64 * 1024;

/// Path of the `tig` binary built for these tests.
pub fn tig_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tig"))
}

/// Removes from `cmd`'s environment whatever would steer `tig` away from what a
/// test sets: `APIKEY`, `TIG_*` and `*_proxy`, in any case.
pub fn clear_tig_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy().to_ascii_lowercase();
        if k == "apikey" || k.starts_with("tig_") || k.ends_with("_proxy") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// `tig ARGS --server URL` with a clean environment ([`clear_tig_env`]), stdin
/// empty, stdout and stderr captured.
pub fn tig_client_cmd(server: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(tig_bin());
    cmd.args(args).arg("--server").arg(server);
    clear_tig_env(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running `tig serve` child process, killed when dropped.
pub struct TigServer {
    /// Base URL from the readiness line, e.g. `http://127.0.0.1:40123` (no trailing `/`).
    pub url: String,
    /// The data directory the server was started on.
    pub root: PathBuf,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    stdout_rest: Arc<Mutex<String>>,
    // Dropped after the child is killed (field order + explicit kill in Drop).
    _tempdir: Option<tempfile::TempDir>,
}

impl TigServer {
    /// Starts `tig serve` on a fresh temporary root with no API key.
    pub fn start() -> Self {
        Self::start_with(None, &[], &[])
    }

    /// Starts `tig serve` on `root` (a fresh temp dir when `None`), with extra
    /// command-line `args` and environment `envs`. `APIKEY` and every `TIG_*`
    /// variable of the test process are removed before `envs` is applied.
    /// `--listen 127.0.0.1:0` and `--root` are added unless `args` has them (or
    /// `envs` sets `TIG_LISTEN` / `TIG_ROOT`).
    /// Panics (with the child's stderr) if the readiness line does not come.
    pub fn start_with(root: Option<&Path>, args: &[&str], envs: &[(&str, &str)]) -> Self {
        match Self::try_start_with(root, args, envs) {
            Ok(server) => server,
            Err(failure) => panic!("tig serve did not start: {failure}"),
        }
    }

    /// Like [`TigServer::start_with`] but returns the failure (exit status and
    /// stderr) instead of panicking, for tests of startup errors.
    pub fn try_start_with(
        root: Option<&Path>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self, StartFailure> {
        Self::spawn(root, true, args, envs)
    }

    /// Runs `tig serve ARGS` with exactly the given arguments (no `--listen`,
    /// no `--root` added) and the test environment cleaned as in
    /// [`TigServer::start_with`]. `expected_root` is only what the test expects
    /// the server to use (for [`TigServer::obj_file`]); no temp dir is made.
    pub fn try_start_exact(
        expected_root: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self, StartFailure> {
        Self::spawn(Some(expected_root), false, args, envs)
    }

    fn spawn(
        root: Option<&Path>,
        add_defaults: bool,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self, StartFailure> {
        let (tempdir, root) = match root {
            Some(r) => (None, r.to_path_buf()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("tig-serve-test-")
                    .tempdir()
                    .expect("create temp root");
                let root = dir.path().to_path_buf();
                (Some(dir), root)
            }
        };
        let mut cmd = Command::new(tig_bin());
        cmd.arg("serve");
        let has = |flag: &str, env: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
                || envs.iter().any(|(k, _)| *k == env)
        };
        if add_defaults && !has("--listen", "TIG_LISTEN") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if add_defaults && !has("--root", "TIG_ROOT") {
            cmd.arg("--root").arg(&root);
        }
        cmd.args(args);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k == "APIKEY" || k.starts_with("TIG_") {
                cmd.env_remove(&key);
            }
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tig serve");

        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr piped");
        {
            let stderr = Arc::clone(&stderr);
            thread::spawn(move || drain_stderr(err_pipe, &stderr));
        }

        let out_pipe = child.stdout.take().expect("stdout piped");
        let stdout_rest = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let stdout_rest = Arc::clone(&stdout_rest);
            thread::spawn(move || {
                let mut reader = BufReader::new(out_pipe);
                let mut sent = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if !sent && let Some(url) = line.trim_end().strip_prefix("tig: listening on ") {
                        sent = true;
                        let _ = tx.send(url.to_string());
                        continue;
                    }
                    if let Ok(mut rest) = stdout_rest.lock() {
                        rest.push_str(&line);
                    }
                }
            });
        }

        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(url) => Ok(TigServer {
                url: url.trim_end_matches('/').to_string(),
                root,
                child: Some(child),
                stderr,
                stdout_rest,
                _tempdir: tempdir,
            }),
            Err(_) => {
                // Either stdout closed (the child exited) or the timeout passed.
                let status = wait_timeout(&mut child, Duration::from_secs(5));
                if status.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // Give the stderr thread a moment to collect the last bytes.
                thread::sleep(Duration::from_millis(100));
                let text = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                let stdout = stdout_rest.lock().map(|s| s.clone()).unwrap_or_default();
                Err(StartFailure {
                    status,
                    stderr: text,
                    stdout,
                })
            }
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        self.url
            .split_once("://")
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| self.url.clone())
    }

    /// Port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("port in url")
    }

    /// Process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("server running")
    }

    /// SIGKILL the server and reap it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (through the `kill` binary: the workspace forbids `unsafe`)
    /// and waits up to `timeout` for the exit. `None` if it did not exit in time
    /// (the child is then still owned and killed on drop).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM", timeout)
    }

    /// Sends signal `sig` (`"TERM"`, `"INT"`, …) and waits up to `timeout`.
    pub fn signal(&mut self, sig: &str, timeout: Duration) -> Option<ExitStatus> {
        self.send_signal(sig);
        self.wait_exit(timeout)
    }

    /// Sends signal `sig` without waiting.
    pub fn send_signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Waits up to `timeout` for the server to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_timeout(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Whether the child process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything the server wrote to stderr so far (its tail).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What the server wrote to stdout after the readiness line.
    pub fn stdout_rest(&self) -> String {
        self.stdout_rest
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Peak resident set size of the server in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Current resident set size of the server in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// `URL/<h>.tig` for a hash.
    pub fn obj_url(&self, h: &str) -> String {
        format!("{}/{}.tig", self.url, h)
    }

    /// `PUT URL/` of `body` (no key), which must answer 200; the path it names.
    pub fn put(&self, body: &[u8]) -> String {
        let r = http()
            .put(format!("{}/", self.url))
            .body(body.to_vec())
            .send()
            .expect("put");
        assert_eq!(r.status(), 200, "{:?}", r.text());
        r.text().expect("path")
    }

    /// The on-disk file of object `h`.
    pub fn obj_file(&self, h: &str) -> PathBuf {
        self.root.join(format!("{h}.tig"))
    }

    /// Sends `raw` bytes verbatim over a new TCP connection (no URL
    /// normalization, unlike curl/reqwest) and returns the parsed reply.
    pub fn raw(&self, raw: &[u8]) -> RawResponse {
        raw_request(&self.addr(), raw)
    }
}

impl Drop for TigServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a server did not print its readiness line.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status if the process exited.
    pub status: Option<ExitStatus>,
    /// Its stderr.
    pub stderr: String,
    /// Its stdout.
    pub stdout: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.status, self.stderr, self.stdout
        )
    }
}

fn drain_stderr(mut pipe: impl Read, keep: &Mutex<String>) {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut s) = keep.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if s.len() > 2 * STDERR_KEEP {
                        let mut cut = s.len() - STDERR_KEEP;
                        while !s.is_char_boundary(cut) {
                            cut += 1;
                        }
                        s.replace_range(..cut, "");
                    }
                }
            }
        }
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing in /proc/{pid}/status"))
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `/<sha256(data)>.tig`.
pub fn obj_path(data: &[u8]) -> String {
    format!("/{}.tig", sha256_hex(data))
}

/// A blocking HTTP client with sane timeouts and no proxy.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build http client")
}

/// A reply read from a raw socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header lines (name lowercased, value trimmed).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when `Transfer-Encoding: chunked`).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `raw` over a fresh TCP connection to `addr` and reads the whole reply.
/// Requests should carry `Connection: close` (see [`raw_get`]).
pub fn raw_request(addr: &str, raw: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set timeout");
    stream.write_all(raw).expect("write request");
    let mut data = Vec::new();
    // A server may reset after replying (e.g. an unread body); keep what arrived.
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    parse_response(&data).unwrap_or_else(|| {
        panic!(
            "unparsable reply to {:?}: {:?}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&data)
        )
    })
}

/// `GET target` (sent verbatim) with `Connection: close`.
pub fn raw_get(addr: &str, target: &str) -> RawResponse {
    raw_request(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// `METHOD target` with a body (sent verbatim, with Content-Length).
pub fn raw_with_body(addr: &str, method: &str, target: &str, body: &[u8]) -> RawResponse {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_request(addr, &req)
}

fn parse_response(data: &[u8]) -> Option<RawResponse> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&data[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw_body = &data[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let Ok(size) = usize::from_str_radix(&size_text, 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// Polls `cond` every `every` until it is true or `timeout` passes; returns
/// whether it became true. For waiting on the retention sweeper etc.
pub fn wait_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(every);
    }
}

/// Every `*.tig` file directly under `root`, as (file name, path).
pub fn tig_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).expect("read root").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tig") {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    out
}

/// Every entry of `root` except the server's temp area `.tig-tmp`, plus every
/// temp file inside it (as `.tig-tmp/<process dir>/<name>`; the per-process
/// `lock` files and the scan lock are not counted). "Nothing left behind"
/// means this lists only the objects (and `apikey`).
pub fn root_entries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).expect("read root").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != ".tig-tmp" {
            out.push(name);
        }
    }
    if let Ok(dirs) = std::fs::read_dir(root.join(".tig-tmp")) {
        for d in dirs.flatten() {
            if !d.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let f = f.file_name().to_string_lossy().into_owned();
                if f != "lock" {
                    out.push(format!(".tig-tmp/{}/{f}", d.file_name().to_string_lossy()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Whether `s` is 64 lowercase hex characters.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no `rand` crate.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The stdout of a `tig` run that must have succeeded (else its stderr in the
/// failure message).
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "tig failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// `(status, body)` of `POST URL/?missing=1` with `body`.
pub fn missing(s: &TigServer, body: impl Into<Vec<u8>>) -> (u16, String) {
    let r = http()
        .post(format!("{}/?missing=1", s.url))
        .body(body.into())
        .send()
        .expect("post");
    (r.status().as_u16(), r.text().expect("text"))
}

/// The value of the sample `series` (name with labels, exactly as printed) in a
/// `/metrics` scrape; 0 when absent (a counter not yet touched).
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("numeric sample"))
        .unwrap_or(0.0)
}
