//! The README's "The store" section is executable: every `sh` block in it (except
//! the one that starts the server) runs line by line in one bash against a test
//! server, and the outputs its comments promise are checked.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The ```sh blocks of the README section titled `## The store`.
fn store_blocks() -> Vec<Vec<String>> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(readme).expect("README.md");
    let start = text.find("\n## The store\n").expect("store section");
    let rest = &text[start + 1..];
    let end = rest[3..].find("\n## ").map(|i| i + 3).unwrap_or(rest.len());
    let section = &rest[..end];
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in section.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sh") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().expect("block")),
            (Some(b), _) => b.push(line.to_string()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn readme_store_examples_run_as_documented() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("tig-data");
    let scratch = tmp.path().join("scratch");
    let work = tmp.path().join("work");
    for d in [&data, &scratch, &work] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(work.join("file.txt"), "a file to commit\n").expect("w");
    std::fs::write(data.join("apikey"), "abc\n").expect("apikey");
    let s = TigServer::start_with(Some(&data), &[], &[]);

    let blocks = store_blocks();
    assert!(blocks.len() >= 5, "found {} sh blocks", blocks.len());
    let mut outputs: Vec<(String, String, String)> = Vec::new();
    for block in blocks
        .iter()
        .filter(|b| !b.iter().any(|l| l.contains("cargo run")))
    {
        let commands: Vec<&String> = block
            .iter()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .collect();
        let mut script = String::new();
        for c in &commands {
            let c = c
                .replace("http://127.0.0.1:7777", &s.url)
                .replace("127.0.0.1:7777", &s.addr())
                .replace("/tmp/", &format!("{}/", scratch.display()));
            script.push_str(&c);
            script.push_str("\nprintf '\\n@@@%s@@@\\n' \"$?\"\n");
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&work)
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut rest = stdout.as_str();
        for c in &commands {
            let (before, after) = rest
                .split_once("\n@@@")
                .unwrap_or_else(|| panic!("no output marker for {c:?}: {stdout}"));
            let (code, after) = after.split_once("@@@\n").expect("marker end");
            outputs.push((c.to_string(), before.to_string(), code.to_string()));
            rest = after;
        }
    }

    let find = |needle: &str| -> Vec<&(String, String, String)> {
        outputs
            .iter()
            .filter(|(c, _, _)| c.contains(needle))
            .collect()
    };
    for (c, _, code) in &outputs {
        assert_eq!(code, "0", "exit status of {c:?}");
    }
    let one = |needle: &str| -> String {
        let hits = find(needle);
        assert!(
            !hits.is_empty(),
            "README has no command containing {needle:?}"
        );
        hits[0].1.clone()
    };
    let test_path = "/f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2.tig";
    assert_eq!(
        one("-X PUT 'http://127.0.0.1:7777/?apikey=abc' -T /tmp/test"),
        test_path
    );
    assert_eq!(
        one("-X POST 'http://127.0.0.1:7777/?apikey=abc' -T /tmp/test"),
        test_path
    );
    assert_eq!(
        one(&format!("curl 'http://127.0.0.1:7777{test_path}'")),
        "test\n"
    );
    let listing = one("curl 'http://127.0.0.1:7777?apikey=abc'");
    assert_eq!(listing, format!("{test_path}\n"));
    let err = one("randomfileunauthorized");
    assert!(err.ends_with('\n') && err.matches('\n').count() == 1);
    let urls = one("curl 'http://127.0.0.1:7777?apikey=abc&format=");
    assert!(urls.lines().all(|l| l.starts_with(&s.url)) && urls.lines().count() == 2);
    assert!(one("tar --exclude").starts_with('/'));
    // KV: content refused, the hash-of-hash slot holds abc then def.
    assert_eq!(
        one("echo key | curl -X PUT"),
        format!(
            "{}/a7998f247bd965694ff227fa325c81169a07471a8b6808d3e002a486c4e65975.tig",
            s.url
        )
    );
    let refused = one("echo abc | curl -X PUT --data-binary @- 'http://127.0.0.1:7777/a7998f");
    assert!(!refused.starts_with("http"), "{refused:?}");
    let slot_reads: Vec<String> = find("curl \"http://127.0.0.1:7777/$slot.tig\"")
        .iter()
        .map(|o| o.1.clone())
        .collect();
    assert_eq!(slot_reads, vec!["abc\n".to_string(), "def\n".to_string()]);
    // Bursts.
    let list = "/1bc742e60c70acf19ff57998fb85e129a69396526a3c7fc114d2df4acb54248e.tig";
    assert_eq!(one("cat /tmp/burst.txt | curl"), list);
    assert_eq!(one("?burst=1"), "abcdefghi");
    // Synchronization.
    let sync = "/7574284e16a554088122dcd49e69f96061965d7c599f834393b563fb31854c7f.tig";
    assert_eq!(one("setifnot=1"), sync);
    assert_eq!(one("append=1"), sync);
    let random = one("od -An -tx1 | time curl");
    assert_eq!(random.split_whitespace().count(), 16, "{random:?}");
    // The README's slot is the one `tig kv` uses for the same key.
    let slot_line = find("slot=$(")
        .first()
        .map(|o| o.0.clone())
        .expect("the slot line");
    let pipeline = slot_line
        .split_once("$(")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(p, _)| p.to_string())
        .expect("slot=$(…)");
    let slot = Command::new("bash")
        .args(["-c", &pipeline])
        .output()
        .expect("bash");
    let kv_path = Command::new(env!("CARGO_BIN_EXE_tig"))
        .args(["kv", "path", "key"])
        .output()
        .expect("tig kv path");
    assert_eq!(
        format!("/{}.tig\n", String::from_utf8_lossy(&slot.stdout)),
        String::from_utf8_lossy(&kv_path.stdout),
        "README slot pipeline vs tig kv path"
    );
    let kv_get = Command::new(env!("CARGO_BIN_EXE_tig"))
        .args(["kv", "get", "key", "--server", &s.url])
        .env_remove("TIG_SERVER")
        .output()
        .expect("tig kv get");
    assert_eq!(
        String::from_utf8_lossy(&kv_get.stdout),
        "def\n",
        "{kv_get:?}"
    );
    // The backup wrote one verified file per listed object.
    for (name, path) in tig_files(&work) {
        let bytes = std::fs::read(path).expect("read");
        assert_eq!(format!("{}.tig", sha256_hex(&bytes)), name);
    }
    assert!(!tig_files(&work).is_empty(), "backup wrote nothing");
}
