//! Property tests (issue 10): snapshot tree objects decode strictly (any bytes:
//! parsed or refused, never a panic) and round-trip; no decoded name can step
//! out of the restore directory.

use proptest::prelude::*;
use tig_client::tree::{Entry, Kind, Mode, decode_tree, encode_tree};
use tig_core::ObjectId;

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop_oneof![
            Just((Mode::File, Kind::Blob)),
            Just((Mode::Exec, Kind::Burst)),
            Just((Mode::Symlink, Kind::Blob)),
            Just((Mode::Dir, Kind::Tree)),
        ],
        any::<u64>(),
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 1..40),
    )
        .prop_map(|((mode, kind), size, id, name)| Entry {
            mode,
            kind,
            size,
            id: ObjectId::from_bytes(id),
            name,
        })
}

fn safe(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_refuse(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(entries) = decode_tree(&bytes) {
            for e in entries {
                prop_assert!(safe(&e.name), "unsafe name {:?}", e.name);
            }
        }
    }

    #[test]
    fn trees_with_a_header_and_hostile_lines(lines in proptest::collection::vec(".{0,120}", 0..10)) {
        let text = format!("tig-tree 1\n{}", lines.join("\n"));
        if let Ok(entries) = decode_tree(text.as_bytes()) {
            for e in entries {
                prop_assert!(safe(&e.name), "unsafe name {:?}", e.name);
            }
        }
    }

    #[test]
    fn encoded_trees_round_trip(mut entries in proptest::collection::vec(entry(), 0..20)) {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        match encode_tree(&entries) {
            Ok(bytes) => prop_assert_eq!(decode_tree(&bytes).unwrap(), entries),
            // Refused names (`/`, NUL, `.`, `..`) are never encoded.
            Err(_) => prop_assert!(entries.iter().any(|e| !safe(&e.name))),
        }
    }
}
