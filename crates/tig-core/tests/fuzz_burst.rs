//! Property tests (issue 10): the burst-list parser, object paths and `format=`
//! never panic, and whatever they accept names exactly one `<64 hex>.tig`.

use proptest::prelude::*;
use tig_core::{MAX_BURST_LIST, ObjectId, format_path, parse_burst};

fn is_object_path(p: &str) -> bool {
    p.len() == 69
        && p.starts_with('/')
        && p.ends_with(".tig")
        && p[1..65]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn id() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 32]>().prop_map(ObjectId::from_bytes)
}

/// Lines a hostile list might carry.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        id().prop_map(|i| i.path()),
        id().prop_map(|i| format!("http://h:1{}", i.path())),
        id().prop_map(|i| format!("{}/../apikey", i.path())),
        id().prop_map(|i| format!("/{}.tig", i.to_hex().to_uppercase())),
        Just("/apikey".to_string()),
        Just("/../etc/passwd".to_string()),
        Just("%2e%2e/%2e%2e/etc/passwd".to_string()),
        Just("file:///etc/passwd".to_string()),
        ".{0,80}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_parse_or_refuse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(ids) = parse_burst(&bytes) {
            for i in ids {
                prop_assert!(is_object_path(&i.path()));
            }
        }
    }

    #[test]
    fn hostile_lines_only_ever_yield_object_ids(lines in proptest::collection::vec(line(), 0..40)) {
        let list = lines.join("\n");
        match parse_burst(list.as_bytes()) {
            Ok(ids) => {
                // Accepted: every non-blank line was an object path or URL to one.
                let members: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
                prop_assert_eq!(ids.len(), members.len());
                for (i, l) in ids.iter().zip(members) {
                    prop_assert!(l.trim().ends_with(&i.path()));
                    prop_assert!(is_object_path(&i.path()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'), "{}", msg);
            }
        }
    }

    #[test]
    fn lists_round_trip(ids in proptest::collection::vec(id(), 0..200), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let list: String = ids.iter().map(|i| format!("{}{sep}", i.path())).collect();
        prop_assert!((list.len() as u64) < MAX_BURST_LIST);
        prop_assert_eq!(parse_burst(list.as_bytes()).unwrap(), ids);
    }

    #[test]
    fn object_paths_accept_only_64_lowercase_hex(s in ".{0,100}") {
        if let Ok(i) = ObjectId::from_path(&s) {
            prop_assert_eq!(i.path(), s.clone());
        }
        if let Some(i) = ObjectId::from_file_name(&s) {
            prop_assert_eq!(i.file_name(), s);
        }
    }

    #[test]
    fn format_replaces_the_first_star_only(template in ".{0,60}", i in id()) {
        let out = format_path(&template, &i);
        if template.contains('*') {
            prop_assert!(out.contains(&i.path()));
            prop_assert_eq!(out.len(), template.len() - 1 + i.path().len());
        } else {
            prop_assert_eq!(out, template);
        }
    }
}
