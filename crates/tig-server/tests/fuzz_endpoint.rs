//! Property tests (issue 10): request path and query parsing never panics, and a
//! hostile path (encoded `..`, `%2e%2e`, NUL, overlong, unicode, backslashes,
//! absolute URLs) never maps to anything but `/<64 hex>.tig` — the only names the
//! store ever opens (`<root>/<64 hex>.tig`).

use axum::http::Method;
use proptest::prelude::*;
use tig_core::ObjectId;
use tig_server::endpoint::{Endpoint, parse, parse_query};

const H: &str = "f2ca1bb6c7e907d06dafe4687e579fce76b37e4e93b7605022da52e6ccc26fd2";

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::PUT),
        Just(Method::POST),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
    ]
}

/// Pieces hostile paths are made of.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just("%2e%2e".to_string()),
        Just("%2E%2E".to_string()),
        Just("%252e%252e".to_string()),
        Just(".%2e".to_string()),
        Just("%00".to_string()),
        Just("\0".to_string()),
        Just("\\".to_string()),
        Just("%5c".to_string()),
        Just("/".to_string()),
        Just("%2f".to_string()),
        Just("//".to_string()),
        Just("./".to_string()),
        Just("apikey".to_string()),
        Just("etc/passwd".to_string()),
        Just("http://evil/".to_string()),
        Just("C:\\".to_string()),
        Just("ü".to_string()),
        Just("\u{202e}".to_string()),
        Just("%c0%ae".to_string()),
        Just("%ff".to_string()),
        Just(H.to_string()),
        Just(H.to_uppercase()),
        Just(".tig".to_string()),
        Just(".TIG".to_string()),
        "[a-f0-9]{1,70}",
        ".{0,8}",
    ]
}

fn hostile_path() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("/".to_string()),
            Just(String::new()),
            Just("//".to_string())
        ],
        proptest::collection::vec(piece(), 0..8),
        prop_oneof![Just(0usize), Just(5_000usize)],
    )
        .prop_map(|(lead, pieces, pad)| format!("{lead}{}{}", pieces.concat(), "a".repeat(pad)))
}

fn id_of(e: &Endpoint) -> Option<ObjectId> {
    match e {
        Endpoint::PutSlot(id, _)
        | Endpoint::Get(id)
        | Endpoint::Head(id)
        | Endpoint::Delete(id) => Some(*id),
        _ => None,
    }
}

fn query() -> impl Strategy<Value = Option<String>> {
    let pair = prop_oneof![
        Just("burst=1".to_string()),
        Just("burst=maybe".to_string()),
        Just("apikey=k".to_string()),
        Just("api%6Bey=k".to_string()),
        Just("format=http%3A%2F%2Fh*".to_string()),
        Just("format=*%00*".to_string()),
        Just("setifnot=1".to_string()),
        Just("append=1".to_string()),
        Just("chtimes=0".to_string()),
        Just("Content-Type=text/html%0d%0aX:1".to_string()),
        Just("missing=1".to_string()),
        ".{0,20}",
    ];
    proptest::option::of(proptest::collection::vec(pair, 0..5).prop_map(|v| v.join("&")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn hostile_paths_name_nothing_but_an_object(m in method(), path in hostile_path(), q in query()) {
        if let Ok((e, _)) = parse(&m, &path, q.as_deref())
            && let Some(id) = id_of(&e)
        {
            // The path was exactly `/<64 lowercase hex>.tig` (after decoding).
            let decoded = percent_encoding::percent_decode_str(&path).decode_utf8_lossy();
            let want = id.path();
            prop_assert_eq!(decoded.as_ref(), want.as_str());
            prop_assert_eq!(id.file_name().len(), 68);
        }
    }

    #[test]
    fn any_path_and_query_is_parsed_or_refused(m in method(), path in ".{0,200}", q in proptest::option::of(".{0,200}")) {
        let _ = parse(&m, &path, q.as_deref());
        let _ = parse_query(q.as_deref());
    }
}

#[test]
fn the_hostile_corpus_is_refused() {
    for p in [
        "/../apikey",
        "/%2e%2e/apikey",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/.%2e/apikey",
        "/%2e./apikey",
        &format!("/{H}.tig/../apikey"),
        &format!("/{H}.tig%00"),
        &format!("/{H}.tig%2f..%2fapikey"),
        &format!("/{}.tig", H.to_uppercase()),
        &format!("/{H}.TIG"),
        &format!("//{H}.tig"),
        &format!("\\{H}.tig"),
        &format!("/%5c{H}.tig"),
        &format!("http://evil/{H}.tig"),
        &format!("/{H}.tig{}", "a".repeat(10_000)),
        "/apikey",
        "/\u{0}",
        "/ü.tig",
    ] {
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            let got = parse(&m, p, None);
            let named = got.as_ref().ok().and_then(|(e, _)| id_of(e));
            assert!(named.is_none(), "{m} {p:?} named an object: {got:?}");
        }
    }
}
