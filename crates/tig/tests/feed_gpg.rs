//! GPG feeds: a store made with the seed's own commands (`gpg --quick-gen-key …
//! ed25519`, `git commit-tree --gpg-sign`, `git update-ref`, `git symbolic-ref`) is read,
//! verified and extended by `tig`, and the seed's `git log --show-signature` accepts
//! what `tig` appended.

#![allow(clippy::unwrap_used, clippy::too_many_arguments)]

#[path = "fixtures/feed/support.rs"]
mod support;

use support::{Env, fixture, log_contents, output};

#[test]
fn tig_reads_verifies_and_extends_a_store_made_by_the_seed_workflow() {
    let env = Env::new();
    let store = env.path().join("bob-store");
    let mut script = std::process::Command::new("sh");
    script
        .arg(fixture("seed-gpg-store.sh"))
        .arg(&store)
        .env("GNUPGHOME", env.gnupghome())
        .env("HOME", env.path());
    let o = output(script);
    assert!(o.ok(), "fixture: {o:?}");
    let bob = o.stdout.trim().to_string();
    assert_eq!(bob.len(), 40);

    // read: through the alias and the fingerprint (either case)
    assert_eq!(
        log_contents(&env.tig_ok(&store, &["feed", "log", "bob-frontier"])),
        ["Second message", "First message"]
    );
    assert_eq!(
        log_contents(&env.tig_ok(&store, &["feed", "log", &bob.to_lowercase(), "--reverse"])),
        ["First message", "Second message"]
    );
    let json = env.tig_ok(&store, &["feed", "log", &bob, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["seq"], 2);
    assert_eq!(v[0]["timestamp"], 1_595_030_460);
    assert_eq!(v[0]["author"], bob.as_str());
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|m| m["signature"] == "good"),
        "{json}"
    );
    let ok = env.tig_ok(&store, &["feed", "verify"]);
    assert_eq!(ok.trim(), format!("{bob}: ok (2 messages)"));

    // extend with --gpg, by fingerprint and by user id
    let third = env.tig_ok(&store, &["feed", "append", "--gpg", &bob, "Third message"]);
    let fourth = env.tig_ok(
        &store,
        &[
            "feed",
            "append",
            "--gpg",
            "bob@example.invalid",
            "Fourth message",
        ],
    );
    assert_eq!(
        env.git_ok(&store, &["rev-parse", "bob-frontier"]).trim(),
        fourth.trim()
    );
    let raw = env.git_ok(&store, &["cat-file", "-p", third.trim()]);
    assert!(raw.contains(&format!("\nauthor {bob} <> ")), "{raw}");
    assert!(
        raw.contains("\ngpgsig -----BEGIN PGP SIGNATURE-----\n"),
        "{raw}"
    );

    // the seed's own check accepts every message
    let log = env.git_ok(&store, &["log", "--show-signature", "bob-frontier"]);
    assert_eq!(log.matches("Good signature from \"Bob").count(), 4, "{log}");
    assert!(!log.contains("BAD signature"), "{log}");
    env.git_ok(&store, &["verify-commit", third.trim(), fourth.trim()]);
    let seed_list = env.git_ok(
        &store,
        &[
            "log",
            "--topo-order",
            "--reverse",
            "--format=%s",
            "bob-frontier",
        ],
    );
    assert_eq!(
        seed_list,
        "First message\nSecond message\nThird message\nFourth message\n"
    );
    env.git_ok(&store, &["fsck", "--strict"]);
    let ok = env.tig_ok(&store, &["feed", "verify", "bob-frontier"]);
    assert_eq!(ok.trim(), format!("{bob}: ok (4 messages)"));

    // An OpenPGP armour can be changed without the key (a Comment header here):
    // the copy is a second commit of the same signed message, valid to gpg. It
    // must not count as bob signing two successors.
    let raw4 = env.git_ok(&store, &["cat-file", "commit", fourth.trim()]);
    let copy = raw4.replacen(
        "gpgsig -----BEGIN PGP SIGNATURE-----\n",
        "gpgsig -----BEGIN PGP SIGNATURE-----\n Comment: not bob's words\n",
        1,
    );
    assert_ne!(copy, raw4);
    let copy = env.git_stdin(
        &store,
        &["hash-object", "-t", "commit", "-w", "--stdin"],
        copy.as_bytes(),
    );
    env.git_ok(&store, &["verify-commit", &copy]);
    let remote = format!("refs/remotes/mallory/{bob}");
    env.git_ok(&store, &["update-ref", &remote, &copy]);
    let f = env.tig(&store, &["feed", "forks", &bob]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(f.stdout.contains("no forks"), "{f:?}");
    env.git_ok(&store, &["update-ref", "-d", &remote]);
    // nor as a proof handed over as a bundle
    let proof = env.path().join("framed.proof");
    let mut refs = Vec::new();
    for c in [fourth.trim(), copy.as_str()] {
        let r = format!("refs/tig/proof/{}/{c}", bob.to_lowercase());
        env.git_ok(&store, &["update-ref", &r, c]);
        refs.push(r);
    }
    let mut args = vec!["bundle", "create", proof.to_str().unwrap()];
    args.extend(refs.iter().map(String::as_str));
    env.git_ok(&store, &args);
    let v = env.tig(
        env.path(),
        &["feed", "verify-proof", proof.to_str().unwrap()],
    );
    assert_ne!(v.code, 0, "{v:?}");
    assert!(v.stderr.contains("no two different"), "{v:?}");
    for r in &refs {
        env.git_ok(&store, &["update-ref", "-d", r]);
    }

    // a message on bob's ref signed by another gpg key is caught
    let mut gen_key = std::process::Command::new("gpg");
    gen_key
        .args([
            "--batch",
            "--quiet",
            "--passphrase",
            "",
            "--pinentry-mode",
            "loopback",
        ])
        .args([
            "--quick-gen-key",
            "Eve <eve@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ])
        .env("GNUPGHOME", env.gnupghome());
    let o = output(gen_key);
    assert!(o.ok(), "{o:?}");
    let mut forge = env.git_cmd(
        &store,
        &[
            "commit-tree",
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "-p",
            "bob-frontier",
            "--gpg-sign=eve@example.invalid",
            "-m",
            "forged",
        ],
    );
    forge
        .env("GIT_AUTHOR_NAME", &bob)
        .env("GIT_COMMITTER_NAME", &bob);
    let o = output(forge);
    assert!(o.ok(), "{o:?}");
    let forged = o.stdout.trim().to_string();
    env.git_ok(
        &store,
        &["update-ref", &format!("refs/heads/{bob}"), &forged],
    );
    let v = env.tig(&store, &["feed", "verify"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stdout
            .contains(&format!("{forged}: signed by another key")),
        "{v:?}"
    );
}
