//! `tig id …` and `tig feed …` end to end on real repositories, checked with the real
//! `git` (`fsck --strict`, `log --show-signature`, `cat-file -p`) and `ssh-keygen`.

#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

#[path = "fixtures/feed/support.rs"]
mod support;

use std::path::Path;

use support::{Env, log_contents, output};

const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[test]
fn id_new_writes_an_openssh_key_pair_and_refuses_to_overwrite() {
    let env = Env::new();
    let (key, id) = env.new_id("bob");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "private key mode");
    }
    // ssh-keygen reads both halves, and they agree
    let derived = output({
        let mut c = std::process::Command::new("ssh-keygen");
        c.args(["-y", "-f"]).arg(&key);
        c
    });
    assert!(derived.ok(), "{derived:?}");
    let pubfile = std::fs::read_to_string(key.with_extension("key.pub")).unwrap();
    assert_eq!(
        derived.stdout.split_whitespace().nth(1),
        pubfile.split_whitespace().nth(1)
    );
    // show prints the same id, from the private or the public file
    let k = key.to_str().unwrap();
    assert_eq!(
        env.tig_ok(env.path(), &["id", "show", "--key", k]).trim(),
        id
    );
    let p = format!("{k}.pub");
    assert_eq!(
        env.tig_ok(env.path(), &["id", "show", "--key", &p]).trim(),
        id
    );
    // never overwrite a key
    let again = env.tig(env.path(), &["id", "new", "--out", k]);
    assert!(!again.ok());
    assert_eq!(again.stderr.lines().count(), 1, "{again:?}");
    assert!(again.stderr.contains("refusing to overwrite"), "{again:?}");
    // default location: ~/.config/tig/id_ed25519
    let def = env.tig_ok(env.path(), &["id", "new"]);
    assert!(env.path().join(".config/tig/id_ed25519.pub").exists());
    assert_eq!(env.tig_ok(env.path(), &["id", "show"]).trim(), def.trim());
}

/// Writes the allowed-signers file of `store` and returns its path.
fn allowed_signers(env: &Env, store: &Path) -> String {
    let text = env.tig_ok(store, &["feed", "allowed-signers"]);
    let path = env.path().join("allowed_signers");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_tig_store_passes_git_fsck_and_git_checks_every_signature() {
    let env = Env::new();
    let (key, id) = env.new_id("bob");
    let store = env.new_store("bob-store");
    let first = env.append(&store, &key, "First message");
    let second = env.append(&store, &key, r#"{"type":"post","text":"hi"}"#);
    // the alias moves with the feed
    env.tig_ok(&store, &["feed", "alias", "bob-frontier", &id]);
    let third = env.append(&store, &key, "Third\nwith two lines");

    env.git_ok(&store, &["fsck", "--strict"]);
    let signers = allowed_signers(&env, &store);
    let cfg = format!("gpg.ssh.allowedSignersFile={signers}");
    let log = env.git_ok(
        &store,
        &["-c", &cfg, "log", "--show-signature", "bob-frontier"],
    );
    let good = format!("Good \"git\" signature for {id} with ED25519 key");
    assert_eq!(log.matches(&good).count(), 3, "{log}");
    assert!(!log.contains("No signature"), "{log}");
    for c in [&first, &second, &third] {
        env.git_ok(&store, &["-c", &cfg, "verify-commit", c]);
    }

    let raw = env.git_ok(&store, &["cat-file", "-p", &third]);
    assert!(
        raw.starts_with(&format!("tree {EMPTY_TREE}\nparent {second}\n")),
        "{raw}"
    );
    assert!(
        raw.contains(&format!("\nauthor {id} <> 1700000000 +0000\n")),
        "{raw}"
    );
    assert!(
        raw.contains(&format!("\ncommitter {id} <> 1700000000 +0000\n")),
        "{raw}"
    );
    assert!(raw.ends_with("\n\nThird\nwith two lines\n"), "{raw}");
    assert_eq!(env.git_ok(&store, &["cat-file", "-p", EMPTY_TREE]), "");
    let first_raw = env.git_ok(&store, &["cat-file", "-p", &first]);
    assert!(!first_raw.contains("\nparent "), "{first_raw}");

    // log: newest first, --reverse, via id or alias
    let newest = env.tig_ok(&store, &["feed", "log", "bob-frontier"]);
    assert_eq!(
        log_contents(&newest),
        [
            "Third\nwith two lines",
            "{\"type\":\"post\",\"text\":\"hi\"}",
            "First message"
        ]
    );
    // messages are told apart: a header line, the content indented, a blank line
    assert!(
        newest.starts_with(&format!(
            "#3 {third} 2023-11-14T22:13:20Z\n    Third\n    with two lines\n\n#2 {second} "
        )),
        "{newest}"
    );
    let oldest = env.tig_ok(&store, &["feed", "log", &id, "--reverse"]);
    assert!(
        log_contents(&oldest)[..2] == ["First message", "{\"type\":\"post\",\"text\":\"hi\"}"],
        "{oldest}"
    );
    // one feed in the store: log names it by default
    assert_eq!(env.tig_ok(&store, &["feed", "log"]), newest);
    // same contents as the seed's `git log --topo-order --reverse --format=%B`
    let json = env.tig_ok(&store, &["feed", "log", &id, "--json", "--reverse"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let msgs = v.as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["seq"], 1);
    assert_eq!(msgs[0]["commit"], first.as_str());
    assert_eq!(msgs[0]["author"], id.as_str());
    assert_eq!(msgs[0]["timestamp"], 1_700_000_000);
    assert_eq!(msgs[0]["content"], "First message");
    assert_eq!(msgs[2]["seq"], 3);
    assert_eq!(msgs[2]["content"], "Third\nwith two lines");
    assert!(msgs.iter().all(|m| m["signature"] == "good"), "{json}");

    // verify and list
    let ok = env.tig_ok(&store, &["feed", "verify"]);
    assert_eq!(ok.trim(), format!("{id}: ok (3 messages)"));
    env.tig_ok(&store, &["feed", "verify", "bob-frontier"]);
    let list = env.tig_ok(&store, &["feed", "list", "--json"]);
    let l: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(l[0]["feed"], id.as_str());
    assert_eq!(l[0]["messages"], 3);
    assert_eq!(l[0]["tip"], third.as_str());
    assert_eq!(l[0]["aliases"][0], "bob-frontier");
    assert_eq!(l[0]["verified"], true);
    let text = env.tig_ok(&store, &["feed", "list"]);
    assert!(
        text.contains(&id) && text.contains("bob-frontier") && text.contains(" ok "),
        "{text}"
    );

    // git sees the alias as the seed's symbolic ref
    let sym = env.git_ok(&store, &["symbolic-ref", "refs/heads/bob-frontier"]);
    assert_eq!(sym.trim(), format!("refs/heads/{id}"));
    // -C works like git's
    let from_outside = env.tig_ok(
        env.path(),
        &["feed", "-C", "bob-store", "log", "bob-frontier"],
    );
    assert_eq!(from_outside, newest);
}

#[test]
fn messages_signed_by_real_git_with_the_feed_key_verify() {
    let env = Env::new();
    let (key, id) = env.new_id("bob");
    let store = env.new_store("s");
    let tip = env.append(&store, &key, "from tig");
    // the seed's workflow, with git's own SSH signing and the same key
    let mut cmd = env.git_cmd(
        &store,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={}", key.display()),
            "commit-tree",
            EMPTY_TREE,
            "-p",
            &tip,
            "-S",
            "-m",
            "from git",
        ],
    );
    cmd.env("GIT_AUTHOR_NAME", &id)
        .env("GIT_COMMITTER_NAME", &id);
    let o = output(cmd);
    assert!(o.ok(), "{o:?}");
    let c = o.stdout.trim();
    env.git_ok(
        &store,
        &["update-ref", &format!("refs/heads/{id}"), c, &tip],
    );
    let v = env.tig_ok(&store, &["feed", "verify"]);
    assert_eq!(v.trim(), format!("{id}: ok (2 messages)"));
    // and tig extends the git-made log
    env.append(&store, &key, "from tig again");
    let log = env.tig_ok(&store, &["feed", "log", &id, "--reverse"]);
    assert_eq!(
        log_contents(&log),
        ["from tig", "from git", "from tig again"]
    );
    env.tig_ok(&store, &["feed", "verify", &id]);
}

/// Makes a commit with real git on top of `parent`, signed with `signing_key` (ssh),
/// authored as `author`; moves `refs/heads/<feed>` to it; returns it.
fn git_signed_commit(
    env: &Env,
    store: &Path,
    feed: &str,
    author: &str,
    signing_key: &Path,
    tree: &str,
    parents: &[&str],
    msg: &str,
) -> String {
    let key = format!("user.signingkey={}", signing_key.display());
    let mut args = vec!["-c", "gpg.format=ssh", "-c", &key, "commit-tree", tree];
    for p in parents {
        args.push("-p");
        args.push(p);
    }
    args.extend(["-S", "-m", msg]);
    let mut cmd = env.git_cmd(store, &args);
    cmd.env("GIT_AUTHOR_NAME", author)
        .env("GIT_COMMITTER_NAME", author);
    let o = output(cmd);
    assert!(o.ok(), "{o:?}");
    let c = o.stdout.trim().to_string();
    env.git_ok(store, &["update-ref", &format!("refs/heads/{feed}"), &c]);
    c
}

/// `tig feed verify` must fail and name `commit` with a line containing `rule`.
fn assert_caught(env: &Env, store: &Path, feed: &str, commit: &str, rule: &str) {
    let v = env.tig(store, &["feed", "verify", feed]);
    assert_eq!(v.code, 1, "verify must fail: {v:?}");
    let line = v
        .stdout
        .lines()
        .find(|l| l.starts_with(commit))
        .unwrap_or_else(|| panic!("no line names {commit}: {v:?}"));
    assert!(line.contains(rule), "expected {rule:?} in {line:?}");
    assert_eq!(v.stderr.lines().count(), 1, "{v:?}");
    // list agrees
    let l = env.tig_ok(store, &["feed", "list", "--json"]);
    assert!(l.contains("\"verified\":false"), "{l}");
}

#[test]
fn tampering_is_caught_and_named() {
    let env = Env::new();
    let (bob_key, bob) = env.new_id("bob");
    let (eve_key, _eve) = env.new_id("eve");
    let fresh = |name: &str| {
        let s = env.new_store(name);
        env.append(&s, &bob_key, "one");
        let tip = env.append(&s, &bob_key, "two");
        (s, tip)
    };

    // 1. a message signed by another key on bob's ref (authored as bob)
    let (s, tip) = fresh("other-key");
    let c = git_signed_commit(&env, &s, &bob, &bob, &eve_key, EMPTY_TREE, &[&tip], "evil");
    assert_caught(&env, &s, &bob, &c, "signed by another key");

    // 2. one byte of content changed after signing
    let (s, tip) = fresh("changed-byte");
    let raw = env.git_ok(&s, &["cat-file", "commit", &tip]);
    assert!(raw.ends_with("two\n"));
    let tampered = raw.replace("\n\ntwo\n", "\n\ntwp\n");
    let c = env.git_stdin(
        &s,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        tampered.as_bytes(),
    );
    env.git_ok(&s, &["update-ref", &format!("refs/heads/{bob}"), &c]);
    assert_caught(&env, &s, &bob, &c, "bad signature");

    // 3. a non-empty tree (properly signed by bob)
    let (s, tip) = fresh("tree");
    let blob = env.git_stdin(&s, &["hash-object", "-w", "--stdin"], b"data\n");
    let tree = env.git_stdin(
        &s,
        &["mktree"],
        format!("100644 blob {blob}\tfile.txt\n").as_bytes(),
    );
    let c = git_signed_commit(&env, &s, &bob, &bob, &bob_key, tree.trim(), &[&tip], "tree");
    assert_caught(&env, &s, &bob, &c, "not the empty tree");

    // 4. a merge commit (properly signed by bob) joining two branches
    let (s, tip) = fresh("merge");
    let side = git_signed_commit(&env, &s, "side", &bob, &bob_key, EMPTY_TREE, &[], "side");
    let c = git_signed_commit(
        &env,
        &s,
        &bob,
        &bob,
        &bob_key,
        EMPTY_TREE,
        &[&tip, &side],
        "m",
    );
    assert_caught(&env, &s, &bob, &c, "merge commit: 2 parents");

    // 5. a message authored by someone else, signed by bob
    let (s, tip) = fresh("author");
    let c = git_signed_commit(
        &env,
        &s,
        &bob,
        "mallory",
        &bob_key,
        EMPTY_TREE,
        &[&tip],
        "x",
    );
    assert_caught(&env, &s, &bob, &c, "author is \"mallory\"");
}

#[test]
fn content_rules_stdin_and_batch() {
    let env = Env::new();
    let (key, id) = env.new_id("bob");
    let k = key.to_str().unwrap();
    let store = env.new_store("s");
    let max = "x".repeat(8192);
    env.append(&store, &key, &max);
    let over = env.tig(&store, &["feed", "append", "--key", k, &"x".repeat(8193)]);
    assert!(!over.ok());
    assert_eq!(over.stderr.lines().count(), 1, "{over:?}");
    assert!(
        over.stderr.contains("8193 bytes is over the limit of 8192"),
        "{over:?}"
    );

    // stdin: bytes exactly as given (a trailing newline is content too)
    let o = env.tig_stdin(
        &store,
        &["feed", "append", "--key", k, "-"],
        b"from stdin\n",
    );
    assert!(o.ok(), "{o:?}");
    let bad = env.tig_stdin(&store, &["feed", "append", "--key", k, "-"], b"a\0b");
    assert!(!bad.ok() && bad.stderr.contains("NUL"), "{bad:?}");
    let bad = env.tig_stdin(&store, &["feed", "append", "--key", k, "-"], &[0xff, 0xfe]);
    assert!(!bad.ok() && bad.stderr.contains("UTF-8"), "{bad:?}");

    // batch: one message per line, one ref update, ids printed in order
    let o = env.tig_stdin(
        &store,
        &["feed", "append", "--key", k, "--batch", "-"],
        b"b1\nb2\n\nb4\n",
    );
    assert!(o.ok(), "{o:?}");
    let ids: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(ids.len(), 4);
    // NUL-separated: messages may hold newlines
    let o = env.tig_stdin(
        &store,
        &["feed", "append", "--key", k, "--batch", "-", "-z"],
        b"z1\nline2\0z2\0",
    );
    assert!(o.ok(), "{o:?}");
    // a bad message anywhere in a batch appends nothing
    let before = env.tig_ok(&store, &["feed", "log", &id]);
    let mut big = b"ok\n".to_vec();
    big.extend(std::iter::repeat_n(b'y', 9000));
    let o = env.tig_stdin(
        &store,
        &["feed", "append", "--key", k, "--batch", "-"],
        &big,
    );
    assert!(!o.ok() && o.stderr.contains("message 2"), "{o:?}");
    assert_eq!(env.tig_ok(&store, &["feed", "log", &id]), before);

    let log = env.tig_ok(&store, &["feed", "log", &id, "--json", "--reverse"]);
    let v: serde_json::Value = serde_json::from_str(&log).unwrap();
    let contents: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            max.as_str(),
            "from stdin\n",
            "b1",
            "b2",
            "",
            "b4",
            "z1\nline2",
            "z2"
        ]
    );
    assert_eq!(v[7]["seq"], 8);
    env.tig_ok(&store, &["feed", "verify"]);
    env.git_ok(&store, &["fsck", "--strict"]);
}

#[test]
fn bad_input_gets_one_line_errors() {
    let env = Env::new();
    let (key, _) = env.new_id("bob");
    let store = env.new_store("s");
    let absent = "a".repeat(64);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["feed", "log", "nobody"], "not found"),
        (vec!["feed", "log", &absent], "not found"),
        (vec!["feed", "verify", "nobody"], "not found"),
        (vec!["feed", "append", "hello"], "tig id new"),
        (vec!["feed", "alias", "x", "nobody"], "not found"),
        (
            vec!["feed", "append", "--key", "/nonexistent/key", "x"],
            "not found",
        ),
        (
            vec![
                "feed",
                "append",
                "--key",
                key.to_str().unwrap(),
                "--date",
                "soon",
                "x",
            ],
            "bad date",
        ),
    ];
    for (args, want) in cases {
        let o = env.tig(&store, &args);
        assert!(!o.ok(), "{args:?} should fail: {o:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {o:?}");
        assert!(o.stderr.contains(want), "{args:?}: want {want:?}: {o:?}");
    }
    // an alias cannot shadow a feed id; aliases are not overwritten silently
    let id = env.tig_ok(env.path(), &["id", "show", "--key", key.to_str().unwrap()]);
    env.append(&store, &key, "m");
    let o = env.tig(&store, &["feed", "alias", &"b".repeat(64), id.trim()]);
    assert!(!o.ok() && o.stderr.contains("feed id"), "{o:?}");
    env.tig_ok(&store, &["feed", "alias", "main-feed", id.trim()]);
    let (key2, id2) = env.new_id("eve");
    env.append(&store, &key2, "e");
    let o = env.tig(&store, &["feed", "alias", "main-feed", &id2]);
    assert!(!o.ok() && o.stderr.contains("already exists"), "{o:?}");
    env.tig_ok(&store, &["feed", "alias", "--force", "main-feed", &id2]);
    assert_eq!(
        log_contents(&env.tig_ok(&store, &["feed", "log", "main-feed"])),
        ["e"]
    );

    // not a store; init refuses a non-empty directory that is not a repository
    let o = env.tig(env.path(), &["feed", "log", "x"]);
    assert!(
        !o.ok() && o.stderr.contains("not a git repository"),
        "{o:?}"
    );
    let o = env.tig(env.path(), &["feed", "init", "."]);
    assert!(!o.ok() && o.stderr.contains("not empty"), "{o:?}");
}

/// Runs a coreutils filter (`base64 …`) over `input`.
fn filter(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{cmd} {args:?}");
    o.stdout
}

/// Anyone can turn a valid ed25519 signature (R, S) into (R, S + ℓ), which OpenSSH
/// (and so `git verify-commit`) still accepts. That gives a second commit with the
/// same parent and content: a fake fork. tig must refuse it, so that a fork proof
/// can only come from the feed's key.
#[test]
fn a_malleated_signature_is_refused_so_nobody_can_fake_a_fork() {
    let env = Env::new();
    let (key, bob) = env.new_id("bob");
    let store = env.new_store("bob-store");
    env.append(&store, &key, "one");
    let tip = env.append(&store, &key, "two");

    // Rebuild "two" with S + ℓ in its SSHSIG (S is the blob's last 32 bytes, LE).
    let raw = env.git_ok(&store, &["cat-file", "commit", &tip]);
    let (head, msg) = raw.split_once("\n\n").unwrap();
    let mut kept = Vec::new();
    let mut pem = Vec::new();
    for line in head.lines() {
        if let Some(first) = line.strip_prefix("gpgsig ") {
            pem.push(first.to_string());
        } else if let Some(cont) = line.strip_prefix(' ') {
            pem.push(cont.to_string());
        } else {
            kept.push(line.to_string());
        }
    }
    let b64: String = pem
        .iter()
        .filter(|l| !l.starts_with("-----"))
        .cloned()
        .collect();
    let mut blob = filter("base64", &["-d"], b64.as_bytes());
    let ell: [u8; 32] = {
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&0x14def9dea2f79cd65812631a5cf5d3edu128.to_le_bytes());
        l[31] = 0x10;
        l
    };
    let n = blob.len();
    let mut carry = 0u16;
    for (b, l) in blob[n - 32..].iter_mut().zip(ell) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert_eq!(
        blob[n - 1] & 0xe0,
        0,
        "S + ℓ < 2^253: OpenSSH's only range check"
    );
    let b64 = String::from_utf8(filter("base64", &["-w", "70"], &blob)).unwrap();
    let mut sig = vec!["-----BEGIN SSH SIGNATURE-----".to_string()];
    sig.extend(b64.lines().map(str::to_string));
    sig.push("-----END SSH SIGNATURE-----".to_string());
    let mut forged = String::new();
    for line in &kept {
        forged.push_str(line);
        forged.push('\n');
        if line.starts_with("committer ") {
            forged.push_str(&format!("gpgsig {}\n", sig.join("\n ")));
        }
    }
    forged.push('\n');
    forged.push_str(msg);
    let c = env.git_stdin(
        &store,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        forged.as_bytes(),
    );
    assert_ne!(c, tip);

    // git accepts the copy: to git this is bob signing two different successors.
    let signers = allowed_signers(&env, &store);
    let cfg = format!("gpg.ssh.allowedSignersFile={signers}");
    env.git_ok(&store, &["-c", &cfg, "verify-commit", &c]);
    env.git_ok(
        &store,
        &["update-ref", &format!("refs/remotes/mallory/{bob}"), &c],
    );

    // tig does not: the copy is a bad signature; and being the same signed
    // message as the original, it is no fork at all.
    let v = env.tig(&store, &["feed", "verify", &bob]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout
            .lines()
            .any(|l| l.starts_with(&c) && l.contains("bad signature")),
        "{v:?}"
    );
    let f = env.tig(&store, &["feed", "forks", &bob]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("no forks"), "{f:?}");

    // The armour is not signed either: a CR before the last line's newline is a
    // third encoding of the same message. git accepts it; tig does not.
    let crlf = raw.replacen(
        " -----END SSH SIGNATURE-----\n",
        " -----END SSH SIGNATURE-----\r\n",
        1,
    );
    assert_ne!(crlf, raw);
    let c2 = env.git_stdin(
        &store,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        crlf.as_bytes(),
    );
    env.git_ok(&store, &["-c", &cfg, "verify-commit", &c2]);
    env.git_ok(
        &store,
        &["update-ref", &format!("refs/remotes/rewrap/{bob}"), &c2],
    );
    let v = env.tig(&store, &["feed", "verify", &bob]);
    assert!(
        v.stdout
            .lines()
            .any(|l| l.starts_with(&c2) && l.contains("not in canonical form")),
        "{v:?}"
    );
    let f = env.tig(&store, &["feed", "forks", &bob]);
    assert_eq!(f.code, 0, "{f:?}");
}
