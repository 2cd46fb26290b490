//! The bundle header parser refuses malformed headers with a clear error and
//! finds the pack offset of good ones (v2 and v3).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::io::Cursor;
use std::path::Path;

use tig_feed::sync::SyncError;
use tig_feed::sync::bundle::read_header;

const A: &str = "7f386cd643fb224310b72da8ed10441d2d2ec639";
const B: &str = "97d5b0c354441f93c5a9a8ae9f56bc406d14f77e";

fn parse(text: &[u8]) -> Result<tig_feed::sync::BundleHeader, SyncError> {
    read_header(Path::new("x.bundle"), &mut Cursor::new(text))
}

#[test]
fn good_v2_and_v3_headers() {
    let text = format!("# v2 git bundle\n-{A} frontier\n{B} refs/heads/feed\n\nPACK");
    let h = parse(text.as_bytes()).unwrap();
    assert_eq!(h.prerequisites.len(), 1);
    assert_eq!(h.refs[0].0, "refs/heads/feed");
    assert_eq!(&text.as_bytes()[h.pack_offset as usize..], b"PACK");
    let text = format!("# v3 git bundle\n@object-format=sha1\n{B} refs/heads/feed\n\n");
    assert_eq!(parse(text.as_bytes()).unwrap().refs.len(), 1);
}

#[test]
fn malformed_headers_are_refused() {
    assert!(matches!(parse(b"hello\n"), Err(SyncError::NotABundle(_))));
    let cases: Vec<Vec<u8>> = vec![
        format!("# v2 git bundle\n{B} refs/heads/feed\n").into_bytes(), // no blank line
        b"# v2 git bundle\nnothex refs/heads/feed\n\n".to_vec(),
        format!("# v2 git bundle\n{B}\n\n").into_bytes(), // no ref name
        format!("# v3 git bundle\n@filter=blob:none\n{B} refs/heads/f\n\n").into_bytes(),
        format!("# v2 git bundle\n@object-format=sha1\n{B} refs/heads/f\n\n").into_bytes(),
        [b"# v2 git bundle\n".to_vec(), vec![b'a'; 10_000]].concat(), // endless line
    ];
    for c in cases {
        let e = parse(&c).unwrap_err();
        assert!(
            matches!(e, SyncError::CorruptBundle(_)),
            "{e} for {:?}",
            String::from_utf8_lossy(&c[..c.len().min(80)])
        );
    }
}
