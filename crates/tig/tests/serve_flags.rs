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
