//! What a new user reads when something is off (issue 16, client items 3, 10,
//! 14, 16, 18): one line that says what was wrong and what would work. Real
//! `tig serve` on loopback, real `tig`.

// Test code: a failed unwrap is a failed test (helpers outside #[test] too).
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};

use common::{TigServer, pseudo_random, tig_bin, tig_client_cmd};

fn tig_env(server: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    tig_client_cmd(server, args)
        .envs(envs.iter().copied())
        .output()
        .expect("run tig")
}

/// The one line on stderr of a failed run.
fn one_line_failure(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn backup_tells_a_disabled_listing_from_an_empty_store() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"something to list").unwrap();
    assert!(
        tig_env(&s.url, &["put", f.to_str().unwrap()], &[])
            .status
            .success()
    );
    let dest = dir.path().join("mirror");
    for envs in [&[][..], &[("TIG_APIKEY", "anything")][..]] {
        let out = tig_env(&s.url, &["backup", dest.to_str().unwrap()], envs);
        let err = one_line_failure(&out);
        assert!(err.contains("listing is disabled"), "{err}");
        assert!(!dest.exists(), "no directory left behind");
    }
}

#[test]
fn refused_keys_name_the_way_to_give_one_and_missing_keys_are_named() {
    let s = TigServer::start_with(None, &[], &[("APIKEY", "sesame")]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, pseudo_random(3, 1000)).unwrap();
    for args in [
        vec!["put", f.to_str().unwrap()],
        vec!["kv", "set", "k", "v"],
    ] {
        let err = one_line_failure(&tig_env(&s.url, &args, &[]));
        assert!(
            err.contains("401") && err.contains("TIG_APIKEY") && err.contains("--apikey-file"),
            "{args:?}: {err}"
        );
    }
    let err = one_line_failure(&tig_env(
        &s.url,
        &["put", f.to_str().unwrap()],
        &[("TIG_APIKEY", "wrong")],
    ));
    assert!(err.contains("refused the API key"), "{err}");

    for op in ["get", "del"] {
        let err = one_line_failure(&tig_env(
            &s.url,
            &["kv", op, "no-such-key"],
            &[("TIG_APIKEY", "sesame")],
        ));
        assert!(err.contains("\"no-such-key\""), "kv {op}: {err}");
    }
}

#[test]
fn a_server_that_is_down_is_one_short_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    for args in [
        vec![
            "get",
            "/0000000000000000000000000000000000000000000000000000000000000000.tig",
        ],
        vec!["put", f.to_str().unwrap()],
        vec!["kv", "get", "k"],
    ] {
        let err = one_line_failure(&tig_env(&url, &args, &[]));
        assert!(
            err.contains(&format!("is the server running at {url}?")),
            "{args:?}: {err}"
        );
        assert!(err.len() < 200, "short: {err}");
    }
}

#[test]
fn a_failed_restore_leaves_no_directory_and_counts_match_snapshot() {
    let s = TigServer::start();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("restored");
    let absent = "/1111111111111111111111111111111111111111111111111111111111111111.tig";
    one_line_failure(&tig_env(
        &s.url,
        &["restore", absent, target.to_str().unwrap()],
        &[],
    ));
    assert!(!target.exists(), "a failed restore left {target:?}");

    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/f"), b"f").unwrap();
    std::fs::write(src.join("g"), b"g").unwrap();
    let out = tig_env(&s.url, &["snapshot", src.to_str().unwrap(), "--json"], &[]);
    assert!(out.status.success());
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = snap["root"].as_str().unwrap().to_string();
    let out = tig_env(
        &s.url,
        &["restore", &root, target.to_str().unwrap(), "--json"],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let rest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snap["dirs"], 3);
    assert_eq!(
        snap["dirs"], rest["dirs"],
        "snapshot {snap} vs restore {rest}"
    );
}

#[test]
fn serve_start_up_errors_say_it_once_and_name_the_format() {
    let out = Command::new(tig_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent",
            "--tls-key",
            "/nonexistent",
        ])
        .env_remove("APIKEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    let root = tempfile::tempdir().unwrap();
    let out = Command::new(tig_bin())
        .args(["serve", "--listen", ":18781", "--root"])
        .arg(root.path())
        .env_remove("APIKEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HOST:PORT"), "{err}");
}

#[test]
fn help_describes_max_size_as_the_limit_override_not_chunking() {
    for cmd in [
        &["kv", "--help"][..],
        &["restore", "--help"],
        &["backup", "--help"],
    ] {
        let out = Command::new(tig_bin()).args(cmd).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help
            .lines()
            .skip_while(|l| !l.contains("--max-size"))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains("Override the server's body limit"),
            "{cmd:?}: {line}"
        );
        assert!(!line.contains("chunked"), "{cmd:?}: {line}");
    }
}
