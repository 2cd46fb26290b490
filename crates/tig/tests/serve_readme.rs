//! The README's commands are executable, as written there.
//!
//! "The store": every `sh` block in it (except the one that starts the server)
//! runs line by line in one bash against a test server. "Feeds", "Replication
//! and forks", "Over tig" and "Client": every command of their `sh` block runs
//! in bash, in order, one after the other, with the real `tig` first on PATH,
//! real servers and real git; a test builds what a line needs (a second store, a
//! fork, a file to upload) between lines. Only server URLs, scratch paths and
//! the `<placeholders>` a line names (filled from what an earlier line printed)
//! are substituted. Exit statuses and the outputs the comments promise are
//! checked, and a command the test does not know fails it.

mod common;

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

#[path = "fixtures/feed/sync_support.rs"]
mod sync_support;

/// The text of README.md.
fn readme_text() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(readme).expect("README.md")
}

/// The ```sh blocks of the README section titled `## The store`.
fn store_blocks() -> Vec<Vec<String>> {
    let text = readme_text();
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

/// The lines of the first ```sh block under the heading line `heading`, which
/// must come before the next heading.
fn first_block(heading: &str) -> Vec<String> {
    let text = readme_text();
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"))
        + heading.len()
        + 2;
    let rest = &text[start..];
    let open = rest
        .find("\n```sh\n")
        .unwrap_or_else(|| panic!("no sh block under {heading:?}"));
    assert!(
        !rest[..open].contains("\n## ") && !rest[..open].contains("\n### "),
        "the first sh block after {heading:?} is in another section"
    );
    let body = &rest[open + "\n```sh\n".len()..];
    let end = body.find("```").expect("end of the sh block");
    body[..end].lines().map(str::to_string).collect()
}

/// The commands of a block, in order: (command as written, its comment).
/// Comment lines and blank lines are skipped; `a; b` is two commands, so each
/// one's exit status is checked.
fn commands(block: &[String]) -> VecDeque<(String, String)> {
    let mut out = VecDeque::new();
    for line in block {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, comment) = line.split_once(" # ").unwrap_or((line, ""));
        for part in cmd.trim_end().split("; ") {
            out.push_back((part.trim().to_string(), comment.trim().to_string()));
        }
    }
    out
}

/// PATH with the directory of the `tig` under test first.
fn path_with_tig() -> String {
    let tig = tig_bin();
    let bin = tig.parent().expect("bin dir");
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Whether `cmd` still holds a `<placeholder>` (lowercase word in angle brackets).
fn has_placeholder(cmd: &str) -> bool {
    cmd.match_indices('<').any(|(i, _)| {
        let rest = &cmd[i + 1..];
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        !word.is_empty() && rest[word.len()..].starts_with('>')
    })
}

/// What one README command did.
struct Ran {
    cmd: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nexit {}\n--- stdout\n{}--- stderr\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

/// The README commands of a block, run one by one in bash as a reader would
/// type them: each in the directory the previous one left (`cd` carries over),
/// with the test's substitutions applied.
struct Readme {
    commands: VecDeque<(String, String)>,
    cwd: PathBuf,
    home: PathBuf,
    envs: Vec<(String, String)>,
    subst: Vec<(String, String)>,
}

impl Readme {
    fn new(block: &[String], cwd: &Path, home: &Path) -> Readme {
        let commands = commands(block);
        assert!(!commands.is_empty(), "empty block: {block:?}");
        Readme {
            commands,
            cwd: cwd.to_path_buf(),
            home: home.to_path_buf(),
            envs: Vec::new(),
            subst: Vec::new(),
        }
    }

    /// Every command of this block ran; go on with `block` where it left off.
    fn then(self, block: &[String]) -> Readme {
        let mut next = Readme::new(block, &self.cwd, &self.home);
        next.envs = self.envs.clone();
        next.subst = self.subst.clone();
        self.finish();
        next
    }

    /// Every command of the block ran: a README line this test does not know
    /// fails it (cover the new line).
    fn finish(self) {
        assert!(
            self.commands.is_empty(),
            "README commands not run by this test: {:?}",
            self.commands
        );
    }

    fn env(&mut self, key: &str, value: &str) {
        self.envs.push((key.to_string(), value.to_string()));
    }

    /// From now on, `from` in a command becomes `to`.
    fn subst(&mut self, from: &str, to: &str) {
        self.subst.push((from.to_string(), to.to_string()));
    }

    /// Where the next command starts (a fixture step between two lines).
    fn cd(&mut self, dir: &Path) {
        self.cwd = dir.to_path_buf();
    }

    /// The next README command, which must contain `needle` (as written),
    /// with `extra` and then the standing substitutions applied.
    fn take(&mut self, needle: &str, extra: &[(&str, &str)]) -> String {
        let (cmd, comment) = self
            .commands
            .pop_front()
            .unwrap_or_else(|| panic!("README has no more commands; wanted {needle:?}"));
        assert!(
            cmd.contains(needle),
            "README order changed: next is {cmd:?} (# {comment}), this test expects {needle:?}"
        );
        let mut cmd = cmd;
        for (from, to) in extra {
            cmd = cmd.replace(from, to);
        }
        for (from, to) in &self.subst {
            cmd = cmd.replace(from.as_str(), to);
        }
        assert!(!has_placeholder(&cmd), "placeholder left in {cmd:?}");
        assert!(!cmd.contains('…'), "placeholder left in {cmd:?}");
        cmd
    }

    /// Run the next command; it must exit 0.
    fn run(&mut self, needle: &str) -> Ran {
        self.run_with(needle, &[], b"", 0)
    }

    /// Run the next command; it must exit with `code`.
    fn run_exit(&mut self, needle: &str, code: i32) -> Ran {
        self.run_with(needle, &[], b"", code)
    }

    /// Run the next command with `extra` substitutions and `stdin`; it must
    /// exit with `code`. Bounded: killed (with what it started) after 120 s.
    fn run_with(&mut self, needle: &str, extra: &[(&str, &str)], stdin: &[u8], code: i32) -> Ran {
        let cmd = self.take(needle, extra);
        let state = self.home.join(".readme-cwd");
        let script = format!(
            "set -o pipefail\ncd '{}' || exit 98\n{cmd}\n__readme_status=$?\npwd > '{}'\nexit $__readme_status\n",
            self.cwd.display(),
            state.display()
        );
        let mut c = Command::new("timeout");
        c.args(["-k", "5", "120", "bash", "-c", &script]);
        clear_tig_env(&mut c);
        c.env("PATH", path_with_tig())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_PROXY", "*")
            .env("no_proxy", "*");
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn bash");
        {
            let mut input = child.stdin.take().expect("stdin");
            // a command that does not read its stdin may close it first
            let _ = input.write_all(stdin);
        }
        let out = child.wait_with_output().expect("bash");
        let ran = Ran {
            cmd,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_ne!(ran.code, 124, "timed out: {ran:?}");
        assert_eq!(ran.code, code, "exit status: {ran:?}");
        let cwd = std::fs::read_to_string(&state).expect("the shell's cwd");
        self.cwd = PathBuf::from(cwd.trim_end_matches('\n'));
        ran
    }
}

/// Whether `s` is a git commit id (40 lowercase hex digits) and a newline.
fn is_commit_line(s: &str) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// "## Feeds", "### Replication and forks" and "### Over tig", in order: bob's
/// feed, a pull that meets eve's fork, the proof, a hub, a bundle, a relay.
#[test]
fn readme_feed_examples_run_as_documented() {
    use sync_support::*;
    let tmp = tempfile::tempdir().expect("tmp");
    let scratch = tmp.path().join("scratch");
    let home = tmp.path().join("home");
    for d in [&scratch, &home] {
        std::fs::create_dir_all(d).expect("mkdir");
    }

    // ## Feeds
    let mut sh = Readme::new(&first_block("## Feeds"), &scratch, &home);
    let id = sh.run("tig id new");
    let bob = id.stdout.trim().to_string();
    assert!(is_hash(&bob) && id.stdout.ends_with('\n'), "{id:?}");
    assert!(home.join(".config/tig/id_ed25519").is_file(), "{id:?}");
    assert!(home.join(".config/tig/id_ed25519.pub").is_file(), "{id:?}");
    assert!(id.stderr.is_empty(), "{id:?}");
    let bob_ref = format!("refs/heads/{bob}");
    sh.run("tig feed init bob-store");
    let store = scratch.join("bob-store");
    assert_eq!(
        git_ok(&store, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    sh.run("cd bob-store");
    let first = sh.run("tig feed append 'First message'");
    assert!(is_commit_line(&first.stdout), "{first:?}");
    assert_eq!(rev(&store, &bob_ref), first.stdout.trim());
    let post = sh.run("tig feed append -");
    assert!(is_commit_line(&post.stdout), "{post:?}");
    // fixture: alice-store replicates bob's first two messages (so a bundle
    // "--for alice-store" later leaves them out)
    let alice_store = new_store(&scratch, "alice-store");
    tig_ok(&alice_store, &["feed", "pull", "../bob-store"]);
    // fixture: the posts the batch line reads
    std::fs::write(store.join("posts.txt"), "post one\npost two\n").expect("posts");
    sh.run("tig feed append --batch posts.txt");
    assert_eq!(count(&store, &bob_ref), 4);
    sh.run("tig feed alias bob-frontier \"$(tig id show)\"");
    assert_eq!(
        rev(&store, "refs/heads/bob-frontier"),
        rev(&store, &bob_ref)
    );
    let log = sh.run("tig feed log");
    let at = |needle: &str| {
        log.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {log:?}"))
    };
    assert!(
        at("post two") < at("post one")
            && at("post one") < at("{\"type\":\"post\"}")
            && at("{\"type\":\"post\"}") < at("First message"),
        "newest first: {log:?}"
    );
    let verify = sh.run("tig feed verify");
    assert!(verify.stderr.is_empty(), "{verify:?}");
    let list = sh.run("tig feed list");
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&bob))
        .unwrap_or_else(|| panic!("no row for bob: {list:?}"));
    for word in ["4", "ok", "bob-frontier"] {
        assert!(
            row.split_whitespace().any(|w| w.contains(word)),
            "{word}: {list:?}"
        );
    }
    sh.run("tig feed alias --delete bob-frontier");
    assert!(!has_ref(&store, "refs/heads/bob-frontier"));
    assert_eq!(count(&store, &bob_ref), 4, "the feed stays");
    sh.run("tig feed allowed-signers > signers");
    let signers = std::fs::read_to_string(store.join("signers")).expect("signers");
    assert!(signers.contains(&bob), "{signers}");
    let git_log = sh.run("git -c gpg.ssh.allowedSignersFile=signers log --show-signature");
    assert_eq!(
        git_log
            .stdout
            .matches(&format!("Good \"git\" signature for {bob}"))
            .count(),
        4,
        "{git_log:?}"
    );

    // Fixture: eve forks her feed. Bob already has the branch she showed him;
    // alice-store has the other one; an empty bare hub.
    let eve = new_ident(&scratch, "eve");
    let eve_ref = format!("refs/heads/{}", eve.id);
    let eve_store = new_store(&scratch, "eve-store");
    let eve_first = append(&eve_store, &eve, "First message");
    append(&eve_store, &eve, "Message for Bob");
    tig_ok(&store, &["feed", "pull", "../eve-store"]);
    git_ok(&eve_store, &["update-ref", &eve_ref, &eve_first]);
    append(&eve_store, &eve, "Message for Alice");
    tig_ok(&alice_store, &["feed", "pull", "../eve-store"]);
    let hub = scratch.join("hub.git");
    git_ok(
        &scratch,
        &["init", "-q", "--bare", hub.to_str().expect("utf8")],
    );

    // ### Replication and forks
    let mut sh = sh.then(&first_block("### Replication and forks"));
    sh.subst("/srv/hub.git", hub.to_str().expect("utf8"));
    let pull = sh.run("tig feed pull ../alice-store");
    assert!(
        pull.stdout.contains("FORK") && pull.stdout.contains(&eve.id),
        "{pull:?}"
    );
    assert!(has_ref(
        &store,
        &format!("refs/remotes/alice-store/{}", eve.id)
    ));
    sh.run("tig feed push /srv/hub.git");
    assert_eq!(rev(&hub, &bob_ref), rev(&store, &bob_ref));
    let full = sh.run("tig feed bundle create bob.bundle");
    assert!(full.stdout.starts_with("bob.bundle: "), "{full:?}");
    git_ok(&store, &["bundle", "verify", "bob.bundle"]);
    assert!(full.stdout.contains(" 6 message(s)"), "{full:?}");
    let incr = sh.run("tig feed bundle create new.bundle --for alice-store");
    assert!(
        incr.stdout.contains(" 4 message(s)") && incr.stdout.contains("incremental"),
        "bob's first two left out: {incr:?}"
    );
    git_ok(
        &alice_store,
        &["bundle", "verify", "../bob-store/new.bundle"],
    );
    let fresh = new_store(&scratch, "fresh-check");
    let verify_new = git(&fresh, &["bundle", "verify", "../bob-store/new.bundle"]);
    assert!(
        !verify_new.ok(),
        "new.bundle needs what alice-store has: {verify_new:?}"
    );
    let forks = sh.run_exit("tig feed forks", 1);
    assert!(forks.stdout.contains(&eve.id), "{forks:?}");
    sh.run_exit("tig feed forks --export eve.proof", 1);
    assert!(store.join("eve.proof").is_file());
    let proof = sh.run("tig feed verify-proof eve.proof");
    assert!(
        proof.stdout.contains(&eve.id) && proof.stdout.contains("Message for Bob"),
        "{proof:?}"
    );
    let graph = sh.run_with("tig feed graph FEED", &[("FEED", &eve.id)], b"", 0);
    assert!(graph.stdout.contains("fork point"), "{graph:?}");
    sh.run_with("tig feed delete FEED-ID", &[("FEED-ID", &eve.id)], b"", 0);
    assert!(!has_ref(&store, &eve_ref));
    assert_eq!(count(&store, &bob_ref), 4);

    // ### Over tig: bob publishes; a fresh store (carol's) pulls.
    let relay = TigServer::start();
    let mut sh = sh.then(&first_block("### Over tig"));
    sh.subst("http://relay:7777", &relay.url);
    sh.run("tig feed push tig+http://relay:7777/alice-news");
    let carol = new_store(&scratch, "carol-store");
    sh.cd(&carol);
    let pulled = sh.run("tig feed pull tig+http://relay:7777/alice-news");
    assert!(pulled.stdout.contains(&bob), "{pulled:?}");
    assert_eq!(rev(&carol, &bob_ref), rev(&store, &bob_ref));
    sh.finish();
    // the head list is the kv slot the prose names
    let head = Command::new(tig_bin())
        .args(["kv", "get", "tig-feed/alice-news", "--server", &relay.url])
        .env_remove("TIG_SERVER")
        .env_remove("TIG_APIKEY")
        .output()
        .expect("tig kv get");
    assert!(head.status.success(), "{head:?}");
    assert!(
        String::from_utf8_lossy(&head.stdout).contains(&bob),
        "{head:?}"
    );
}

/// "## Client": put, get (and --continue), split, stripe, kv, snapshot,
/// restore, backup, and serving the backup, against two real servers.
#[test]
fn readme_client_examples_run_as_documented() {
    const MIB: usize = 1 << 20;
    let tmp = tempfile::tempdir().expect("tmp");
    let work = tmp.path().join("work");
    let home = tmp.path().join("home");
    let data = tmp.path().join("data-a");
    let backup = tmp.path().join("backup");
    for d in [&work, &home, &data] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(data.join("apikey"), "abc\n").expect("apikey");
    // A has an API key and a 1 MiB body limit (so disk.img is over it).
    let a = TigServer::start_with(Some(&data), &["--max-size", "1MiB"], &[]);
    let b = TigServer::start();
    let report = pseudo_random(1, 20_000);
    let disk = pseudo_random(2, 3 * MIB + 12_345);
    let secret = pseudo_random(3, 50_000);
    std::fs::write(work.join("report.pdf"), &report).expect("w");
    std::fs::write(work.join("disk.img"), &disk).expect("w");
    std::fs::write(work.join("secret.tar"), &secret).expect("w");
    let read = |name: &str| std::fs::read(work.join(name)).unwrap_or_default();

    let mut sh = Readme::new(&first_block("## Client"), &work, &home);
    sh.env("TIG_SERVER", &a.url);
    sh.env("TIG_APIKEY", "abc");
    let put = sh.run("tig put report.pdf");
    assert_eq!(
        put.stdout,
        format!("/{}.tig\n", sha256_hex(&report)),
        "{put:?}"
    );
    let chunked = sh.run("tig put disk.img");
    let list = chunked.stdout.trim().to_string();
    assert!(
        list.starts_with('/')
            && list.ends_with(".tig?burst=1")
            && chunked.stdout.lines().count() == 1,
        "{chunked:?}"
    );
    sh.subst("/<h>.tig?burst=1", &list);
    std::fs::remove_file(work.join("disk.img")).expect("rm");
    sh.run("tig get /<h>.tig?burst=1 -o disk.img");
    assert!(read("disk.img") == disk, "disk.img differs");
    // Fixture: an interrupted download, 1 MiB and a bit in disk.img.part.
    std::fs::remove_file(work.join("disk.img")).expect("rm");
    std::fs::write(work.join("disk.img.part"), &disk[..MIB + 7]).expect("part");
    sh.run("tig get /<h>.tig?burst=1 -o disk.img --continue");
    assert!(
        read("disk.img") == disk,
        "disk.img differs after --continue"
    );
    assert!(!work.join("disk.img.part").exists());
    sh.subst("http://a:7777", &a.url);
    sh.subst("http://b:7777", &b.url);
    let split = sh.run("tig put --split http://a:7777,http://b:7777 secret.tar");
    let xor = split.stdout.trim().to_string();
    assert!(
        xor.starts_with(&format!("xor:{}/", a.url)) && xor.contains(&format!(".tig,{}/", b.url)),
        "{split:?}"
    );
    std::fs::remove_file(work.join("secret.tar")).expect("rm");
    sh.run_with(
        "tig get xor:",
        &[(
            "xor:http://a:7777/<pad>.tig,http://b:7777/<share>.tig",
            &xor,
        )],
        b"",
        0,
    );
    assert!(read("secret.tar") == secret, "secret.tar differs");
    let stripe = sh.run("tig put --stripe http://a:7777,http://b:7777 disk.img");
    let striped = stripe.stdout.trim().to_string();
    assert!(
        striped.starts_with(&format!("{}/", a.url)) && striped.ends_with(".tig?burst=1"),
        "{stripe:?}"
    );
    let back = Command::new(tig_bin())
        .args(["get", &striped])
        .env_remove("TIG_SERVER")
        .env_remove("TIG_APIKEY")
        .output()
        .expect("tig get");
    assert!(
        back.status.success() && back.stdout == disk,
        "striped get: {}",
        String::from_utf8_lossy(&back.stderr)
    );
    sh.run("tig kv set color blue");
    let color = sh.run("tig kv get color");
    assert_eq!(color.stdout, "blue", "{color:?}");
    sh.run_with("tig kv append log -", &[], b"one log line\n", 0);
    sh.run("tig kv setifnot lock me");
    sh.run("tig kv del color");
    let kv = |args: &[&str]| {
        Command::new(tig_bin())
            .args(args)
            .args(["--server", &a.url])
            .env("TIG_APIKEY", "abc")
            .env_remove("TIG_SERVER")
            .output()
            .expect("tig kv")
    };
    assert_eq!(kv(&["kv", "get", "log"]).stdout, b"one log line\n");
    assert_eq!(kv(&["kv", "get", "lock"]).stdout, b"me");
    assert!(!kv(&["kv", "get", "color"]).status.success(), "deleted");
    assert_eq!(
        kv(&["kv", "setifnot", "lock", "you"]).status.code(),
        Some(3)
    );
    let snap = sh.run("tig snapshot .");
    let root = snap.stdout.trim().to_string();
    assert!(
        root.strip_prefix('/')
            .and_then(|r| r.strip_suffix(".tig"))
            .is_some_and(is_hash),
        "{snap:?}"
    );
    sh.subst("/<root>.tig", &root);
    sh.run("tig restore /<root>.tig ../copy");
    let copy = tmp.path().join("copy");
    for (name, want) in [
        ("report.pdf", &report),
        ("disk.img", &disk),
        ("secret.tar", &secret),
    ] {
        assert!(
            std::fs::read(copy.join(name)).unwrap_or_default() == *want,
            "{name} restored differently"
        );
    }
    sh.subst("…", "abc");
    sh.subst(" /backup", &format!(" {}", backup.display()));
    sh.run("tig backup /backup");
    let mirrored: Vec<String> = tig_files(&backup).into_iter().map(|(n, _)| n).collect();
    assert!(
        mirrored.contains(&format!("{}.tig", sha256_hex(&report))),
        "{mirrored:?}"
    );
    // The last line starts a server that runs until stopped: run it with the
    // README's arguments (and TIG_LISTEN for a free port) under the harness.
    let serve = sh.take("tig serve --root /backup", &[]);
    let args: Vec<&str> = serve
        .strip_prefix("tig serve ")
        .expect("tig serve …")
        .split_whitespace()
        .collect();
    let mirror = TigServer::try_start_exact(&backup, &args, &[("TIG_LISTEN", "127.0.0.1:0")])
        .unwrap_or_else(|e| panic!("{serve}: {e}"));
    let got = http()
        .get(format!("{}/{}.tig", mirror.url, sha256_hex(&report)))
        .send()
        .expect("GET from the mirror");
    assert!(got.status().is_success(), "{:?}", got.status());
    assert!(
        got.bytes().expect("body").as_ref() == report.as_slice(),
        "mirror serves other bytes"
    );
    sh.finish();
}
