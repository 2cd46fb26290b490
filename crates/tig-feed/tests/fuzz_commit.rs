//! Property tests (issue 10): the commit parser and the SSHSIG armour carried in
//! a `gpgsig` header, and bundle headers. Any bytes are parsed or refused with a
//! message, never a panic; what tig writes parses back exactly.

use std::io::Cursor;
use std::path::Path;

use proptest::prelude::*;
use tig_feed::Time;
use tig_feed::commit::{content_of, parse, payload, with_signature};
use tig_feed::sync::bundle::read_header;

fn armour() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[A-Za-z0-9+/=]{1,70}", 0..6),
        prop_oneof![
            Just("SSH SIGNATURE".to_string()),
            Just("PGP SIGNATURE".to_string()),
            ".{0,12}"
        ],
    )
        .prop_map(|(lines, kind)| {
            format!(
                "-----BEGIN {kind}-----\n{}\n-----END {kind}-----\n",
                lines.join("\n")
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_parse_or_refuse(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn signed_commits_round_trip(
        author in "[a-zA-Z0-9._-]{1,30}",
        seconds in 0i64..4_000_000_000,
        content in proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 0..300),
        sig in armour(),
    ) {
        let time = Time { seconds, offset_minutes: 0 };
        let p = payload(&author, None, time, &content);
        let raw = with_signature(&p, &sig);
        let parsed = parse(&raw).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&parsed.payload, &p);
        // git keeps the signature's final newline; tig writes it without.
        prop_assert_eq!(
            parsed.signature.as_deref().map(|s| s.trim_end_matches('\n')),
            Some(sig.trim_end_matches('\n'))
        );
        prop_assert_eq!(content_of(parsed.message()), &content[..]);
        prop_assert_eq!(parsed.author_name, author);
    }

    #[test]
    fn mangled_signed_commits_never_panic(
        content in proptest::collection::vec(any::<u8>(), 0..100),
        sig in armour(),
        cut in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let p = payload("a", None, Time { seconds: 1, offset_minutes: 0 }, &content);
        let mut raw = with_signature(&p, &sig);
        let at = cut.index(raw.len() + 1);
        raw.splice(at..at, junk);
        let _ = parse(&raw);
    }

    #[test]
    fn bundle_headers_parse_or_refuse(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("# v2 git bundle".to_string()),
                Just("# v3 git bundle".to_string()),
                Just("@object-format=sha1".to_string()),
                "-[0-9a-f]{40}( .{0,10})?",
                "[0-9a-f]{40} refs/heads/[a-z]{1,10}",
                "[0-9a-f]{0,45} .{0,20}",
                ".{0,50}",
            ],
            0..8,
        ),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = lines.join("\n").into_bytes();
        bytes.extend_from_slice(b"\n\n");
        bytes.extend_from_slice(&tail);
        let _ = read_header(Path::new("fuzz.bundle"), &mut Cursor::new(bytes));
    }
}
