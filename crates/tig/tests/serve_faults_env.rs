//! An unlucky operator's faults and idle clients against the real `tig serve`
//! (issue 10): a read-only root, the root removed under a running server, an
//! object file that cannot be read, many idle connections, a low fd limit. Each
//! answer is one line, nothing panics and the server stays up. Long variants
//! (2,000 idle connections, header trickle past the 30 s header timeout) are
//! behind `--ignored`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs mounted on a fresh directory (root only), unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount() -> Option<Self> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("tig-ro-")
            .tempdir()
            .ok()?
            .keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs");
            return None;
        }
        Some(Self { dir })
    }

    fn remount(&self, opt: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {opt}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn one_line(r: reqwest::blocking::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body = r.text().expect("body");
    assert!(
        body.ends_with('\n') && body.matches('\n').count() == 1,
        "not one line: {body:?}"
    );
    (status, body)
}

fn put(c: &reqwest::blocking::Client, s: &TigServer, body: &[u8]) -> reqwest::blocking::Response {
    c.put(format!("{}/", s.url))
        .body(body.to_vec())
        .send()
        .expect("put")
}

#[test]
fn read_only_root_refuses_writes_in_one_line_and_serves_reads() {
    let Some(fs) = Tmpfs::mount() else {
        return;
    };
    let mut s = TigServer::start_with(Some(&fs.dir), &[], &[]);
    let c = http();
    assert_eq!(put(&c, &s, b"before").status(), 200);
    fs.remount("ro");
    let (status, body) = one_line(put(&c, &s, b"while read-only"));
    assert!(status >= 500, "{status} {body}");
    let (status, _) = one_line(
        c.put(format!("{}?append=1", s.obj_url(&sha256_hex(b"slot"))))
            .body("x")
            .send()
            .expect("append"),
    );
    assert!(status >= 500);
    let r = c
        .get(format!("{}{}", s.url, obj_path(b"before")))
        .send()
        .expect("get");
    assert_eq!(r.text().expect("t"), "before");
    fs.remount("rw");
    assert_eq!(put(&c, &s, b"after").status(), 200);
    assert!(s.is_running());
    assert!(!s.stderr().contains("panicked"));
}

#[test]
fn root_removed_under_a_running_server() {
    let mut s = TigServer::start();
    let c = http();
    assert_eq!(put(&c, &s, b"there").status(), 200);
    std::fs::remove_dir_all(&s.root).expect("rm -r root");
    let (status, _) = one_line(put(&c, &s, b"into nothing"));
    assert!(status >= 500, "{status}");
    let (status, _) = one_line(
        c.get(format!("{}{}", s.url, obj_path(b"there")))
            .send()
            .expect("get"),
    );
    assert_eq!(status, 404);
    assert!(s.is_running());
    assert!(!s.stderr().contains("panicked"));
}

#[test]
fn an_object_file_that_cannot_be_read_is_one_line() {
    let mut s = TigServer::start();
    let c = http();
    let h = sha256_hex(b"unreadable");
    // A symlink loop: open() fails with ELOOP even for root (chmod 000 would not
    // stop root).
    std::os::unix::fs::symlink(format!("{h}.tig"), s.obj_file(&h)).expect("symlink");
    for r in [
        c.get(s.obj_url(&h)).send().expect("get"),
        c.head(s.obj_url(&h)).send().expect("head"),
    ] {
        assert!(r.status().as_u16() >= 400, "{}", r.status());
    }
    let (status, _) = one_line(c.get(s.obj_url(&h)).send().expect("get"));
    assert!(status >= 400);
    // A write of those very bytes is refused or stored, never a panic.
    let r = put(&c, &s, b"unreadable");
    assert!(r.status().as_u16() < 600);
    assert_eq!(put(&c, &s, b"other").status(), 200);
    assert!(s.is_running());
    assert!(!s.stderr().contains("panicked"));
}

/// Opens `n` connections that send nothing, then measures GETs from another
/// client; returns the fastest of 10 and the slowest.
fn idle_connections_then_get(n: usize) -> (Duration, Duration) {
    let s = TigServer::start();
    let c = http();
    assert_eq!(put(&c, &s, b"hello").status(), 200);
    let idle: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(s.addr()).expect("connect"))
        .collect();
    let mut times = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let r = raw_get(&s.addr(), &obj_path(b"hello"));
        times.push(start.elapsed());
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
    }
    drop(idle);
    times.sort();
    (times[0], times[9])
}

#[test]
fn two_hundred_idle_connections_do_not_delay_a_get() {
    let (best, worst) = idle_connections_then_get(200);
    eprintln!("200 idle connections: GET best {best:?}, worst {worst:?}");
    assert!(best < Duration::from_millis(50), "best {best:?}");
}

#[test]
#[ignore = "long: 2,000 idle connections (needs ulimit -n > 2,100); see RELIABILITY.md"]
fn two_thousand_idle_connections_do_not_delay_a_get() {
    let (best, worst) = idle_connections_then_get(2_000);
    eprintln!("2000 idle connections: GET best {best:?}, worst {worst:?}");
    assert!(best < Duration::from_millis(50), "best {best:?}");
}

/// With its fd limit at 64, 100 connections exhaust the server; it keeps
/// running, and once they close it serves again.
#[test]
fn fd_exhaustion_is_survived() {
    let mut s = TigServer::start();
    let ok = Command::new("prlimit")
        .arg(format!("--pid={}", s.pid()))
        .arg("--nofile=64:64")
        .status()
        .is_ok_and(|st| st.success());
    if !ok {
        eprintln!("SKIPPED: prlimit unavailable");
        return;
    }
    let hog: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(s.addr()).ok())
        .collect();
    // A request while every fd is taken: refused or left waiting, never a crash.
    let mut extra = TcpStream::connect(s.addr()).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 64];
    let _ = extra.read(&mut buf);
    drop(extra);
    drop(hog);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            TcpStream::connect(s.addr()).is_ok_and(|mut t| {
                let _ = t.set_read_timeout(Some(Duration::from_secs(2)));
                t.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .is_ok()
                    && {
                        let mut b = Vec::new();
                        let _ = t.read_to_end(&mut b);
                        b.starts_with(b"HTTP/1.1 200")
                    }
            })
        }),
        "the server did not recover from fd exhaustion"
    );
    assert!(s.is_running());
    assert!(!s.stderr().contains("panicked"));
}

/// Headers trickled one byte a second are cut off by the 30 s header timeout.
#[test]
#[ignore = "long: waits out the 30 s header timeout; see RELIABILITY.md"]
fn trickled_headers_are_cut_off() {
    let s = TigServer::start();
    let mut t = TcpStream::connect(s.addr()).expect("connect");
    let start = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = None;
    for b in head.iter() {
        if t.write_all(&[*b]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        let _ = t.set_nonblocking(true);
        let mut buf = [0u8; 16];
        if let Ok(0) = t.read(&mut buf) {
            cut = Some(start.elapsed());
            break;
        }
        let _ = t.set_nonblocking(false);
    }
    let cut = cut.expect("the trickle was never cut off");
    eprintln!("trickled headers cut off after {cut:?}");
    assert!(cut < Duration::from_secs(40));
}

/// A body that stalls half-way is cut off after the 30 s body idle timeout with
/// one line, and nothing is stored or left behind.
#[test]
#[ignore = "long: waits out the 30 s body idle timeout; see RELIABILITY.md"]
fn stalled_bodies_are_cut_off() {
    let s = TigServer::start();
    let mut t = TcpStream::connect(s.addr()).expect("connect");
    t.write_all(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhalf")
        .expect("send");
    t.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let start = Instant::now();
    let mut reply = Vec::new();
    let _ = t.read_to_end(&mut reply);
    let took = start.elapsed();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    eprintln!("stalled body cut off after {took:?}: {reply:?}");
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");
    assert!(took < Duration::from_secs(40));
    assert!(
        root_entries(&s.root).is_empty(),
        "{:?}",
        root_entries(&s.root)
    );
}
