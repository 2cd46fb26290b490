//! The command line of `tig serve`: readiness line, flags and their `TIG_*`
//! environment variables, defaults, exit codes for bad flags (2) and startup
//! failures (1, one `tig: …` line), graceful SIGTERM (0).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::*;

fn put_and_find(s: &TigServer, root: &Path, body: &[u8]) {
    let r = http()
        .put(format!("{}/", s.url))
        .body(body.to_vec())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let file = root.join(format!("{}.tig", sha256_hex(body)));
    assert_eq!(std::fs::read(&file).expect("object in root"), body);
}

#[test]
fn readiness_line_names_the_bound_address_and_sigterm_exits_zero() {
    let mut s = TigServer::start();
    let port = s.port();
    assert_ne!(port, 0);
    assert_eq!(s.url, format!("http://127.0.0.1:{port}"));
    put_and_find(&s, &s.root.clone(), b"ready");
    let status = s
        .terminate(Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", s.stderr());
    assert_eq!(s.stdout_rest(), "", "exactly one line on stdout");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after exit"
    );
}

/// `--workers 0` (one shared thread pool) and `--workers N` (N event loops on
/// one port) both serve, and both stop cleanly on SIGTERM.
#[test]
fn every_worker_layout_serves_and_stops() {
    for workers in ["0", "1", "3"] {
        let mut s = TigServer::start_with(None, &["--workers", workers], &[]);
        for i in 0..8 {
            put_and_find(
                &s,
                &s.root.clone(),
                format!("workers {workers} #{i}").as_bytes(),
            );
        }
        let status = s
            .terminate(Duration::from_secs(30))
            .expect("exits on SIGTERM");
        assert_eq!(
            status.code(),
            Some(0),
            "--workers {workers}: {}",
            s.stderr()
        );
    }
    expect_exit(&["--workers", "many"], &[], 2);
}

#[test]
fn listen_and_root_from_env() {
    let root = tempfile::tempdir().expect("tmp");
    let s = TigServer::start_with(
        None,
        &[],
        &[
            ("TIG_LISTEN", "127.0.0.1:0"),
            ("TIG_ROOT", root.path().to_str().expect("utf8")),
        ],
    );
    assert!(s.url.starts_with("http://127.0.0.1:"));
    put_and_find(&s, root.path(), b"env root");
}

#[test]
fn a_missing_root_given_by_flag_is_created() {
    let parent = tempfile::tempdir().expect("tmp");
    let root = parent.path().join("tig-data").join("nested");
    let s = TigServer::start_with(None, &["--root", root.to_str().expect("utf8")], &[]);
    assert!(root.is_dir(), "{}", s.stderr());
    put_and_find(&s, &root, b"created root");
}

#[test]
fn root_flag_wins_over_env() {
    let flag_root = tempfile::tempdir().expect("tmp");
    let env_root = tempfile::tempdir().expect("tmp");
    let s = TigServer::start_with(
        None,
        &["--root", flag_root.path().to_str().expect("utf8")],
        &[("TIG_ROOT", env_root.path().to_str().expect("utf8"))],
    );
    put_and_find(&s, flag_root.path(), b"flag root");
    assert!(tig_files(env_root.path()).is_empty());
}

#[test]
fn listen_on_ipv6_loopback() {
    let has_v6 = std::fs::read_to_string("/proc/net/if_inet6")
        .map(|s| s.contains(" lo"))
        .unwrap_or(false)
        && TcpListener::bind("[::1]:0").is_ok();
    if !has_v6 {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let s = TigServer::start_with(None, &["--listen", "[::1]:0"], &[]);
    assert!(s.url.starts_with("http://[::1]:"), "{}", s.url);
    put_and_find(&s, &s.root.clone(), b"v6");
}

#[test]
fn default_root_is_data_if_it_exists_else_tmp() {
    let expected = if Path::new("/data").is_dir() {
        Path::new("/data")
    } else {
        Path::new("/tmp")
    };
    let s = TigServer::try_start_exact(expected, &["--listen", "127.0.0.1:0"], &[])
        .unwrap_or_else(|f| panic!("{f}"));
    let body = format!("default root probe {}", std::process::id());
    let r = http()
        .put(format!("{}/", s.url))
        .body(body.clone())
        .send()
        .expect("put");
    assert_eq!(r.status(), 200);
    let file = expected.join(format!("{}.tig", sha256_hex(body.as_bytes())));
    let found = file.exists();
    drop(s);
    let _ = std::fs::remove_file(&file);
    assert!(found, "object not in {}", expected.display());
}

#[test]
fn durations_and_sizes_in_every_documented_form_are_accepted() {
    for retention in ["0", "3s", "10m", "2w", "1h30m"] {
        let s = TigServer::start_with(None, &["--retention", retention], &[]);
        put_and_find(&s, &s.root.clone(), retention.as_bytes());
    }
    for size in ["1048576", "128MiB", "1GiB", "10KiB", "1MB"] {
        let s = TigServer::start_with(None, &["--max-size", size], &[]);
        put_and_find(&s, &s.root.clone(), size.as_bytes());
    }
    let s = TigServer::start_with(None, &["--lifetime", "1h"], &[]);
    put_and_find(&s, &s.root.clone(), b"lifetime");
}

fn expect_exit(args: &[&str], envs: &[(&str, &str)], code: i32) -> String {
    let failure = TigServer::try_start_with(None, args, envs)
        .err()
        .unwrap_or_else(|| panic!("started with {args:?} {envs:?}"));
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(code),
        "{args:?}: {failure}"
    );
    assert!(!failure.stderr.trim().is_empty(), "says why: {args:?}");
    failure.stderr
}

#[test]
fn bad_flags_exit_2() {
    expect_exit(&["--bogus"], &[], 2);
    expect_exit(&["--max-size", "lots"], &[], 2);
    expect_exit(&["--max-size", "-5"], &[], 2);
    expect_exit(&["--retention", "soon"], &[], 2);
    expect_exit(&["--lifetime", "forever-ish"], &[], 2);
    expect_exit(&[], &[("TIG_MAX_SIZE", "huge")], 2);
    expect_exit(&[], &[("TIG_RETENTION", "later")], 2);
}

#[test]
fn bad_listen_address_is_refused() {
    let failure = TigServer::try_start_with(None, &["--listen", "not an address"], &[])
        .err()
        .expect("must not start");
    let code = failure.status.and_then(|s| s.code());
    assert!(code == Some(2) || code == Some(1), "{failure}");
}

#[test]
fn startup_failures_exit_1_with_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    // The root is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("w");
    let err = expect_exit(&["--root", file.to_str().expect("utf8")], &[], 1);
    assert!(
        err.lines().last().unwrap_or("").starts_with("tig: "),
        "{err}"
    );
    // The address is taken.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = expect_exit(&["--listen", &addr], &[], 1);
    assert!(
        err.lines().last().unwrap_or("").starts_with("tig: "),
        "{err}"
    );
}

#[test]
fn ctrl_c_exits_zero() {
    let mut s = TigServer::start();
    put_and_find(&s, &s.root.clone(), b"before ctrl-c");
    let status = s
        .signal("INT", Duration::from_secs(30))
        .expect("exits on SIGINT");
    assert_eq!(status.code(), Some(0), "{}", s.stderr());
}

/// A body sent in pieces over about a second.
struct Trickle {
    left: usize,
    sent_some: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
        let n = buf.len().min(16 * 1024).min(self.left);
        buf[..n].fill(b't');
        self.left -= n;
        self.sent_some
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut s = TigServer::start();
    let size = 20 * 16 * 1024;
    let sent_some = Arc::new(AtomicBool::new(false));
    let body = Trickle {
        left: size,
        sent_some: Arc::clone(&sent_some),
    };
    let url = format!("{}/", s.url);
    let upload = std::thread::spawn(move || {
        let r = http()
            .put(url)
            .body(reqwest::blocking::Body::sized(body, size as u64))
            .send()
            .expect("put");
        (r.status().as_u16(), r.text().expect("t"))
    });
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || sent_some.load(Ordering::SeqCst)
    ));
    s.send_signal("TERM");
    let (status, path) = upload.join().expect("upload");
    assert_eq!(status, 200, "the request in flight is answered");
    let want = vec![b't'; size];
    assert_eq!(path, obj_path(&want));
    assert_eq!(
        std::fs::read(s.root.join(&path[1..])).expect("stored"),
        want
    );
    let exit = s.wait_exit(Duration::from_secs(30)).expect("exits");
    assert_eq!(exit.code(), Some(0));
}

/// The readiness line promises a server that is fully up, signal handling
/// included: a supervisor may stop it at once.
#[test]
fn signals_right_after_the_readiness_line_are_graceful() {
    // Several rounds: the window between the line and the handlers is small.
    for sig in ["TERM", "INT", "TERM", "INT", "TERM", "INT", "TERM", "INT"] {
        let mut s = TigServer::start();
        let status = s
            .signal(sig, Duration::from_secs(30))
            .expect("exits on the signal");
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{sig} right after readiness: {status:?}"
        );
    }
}
