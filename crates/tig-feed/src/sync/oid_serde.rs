//! `git2::Oid` in reports serialized as 40-hex strings (git2 has no serde).

use git2::Oid;
use serde::Serializer;
use serde::ser::SerializeSeq;

/// One id.
pub(crate) fn oid<S: Serializer>(o: &Oid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

/// An optional id (`null` when absent).
pub(crate) fn opt_oid<S: Serializer>(o: &Option<Oid>, s: S) -> Result<S::Ok, S::Error> {
    match o {
        Some(o) => s.collect_str(o),
        None => s.serialize_none(),
    }
}

/// `[commit, rule]` pairs.
pub(crate) fn violations<S: Serializer>(v: &[crate::Violation], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for x in v {
        seq.serialize_element(&(x.commit.to_string(), &x.rule))?;
    }
    seq.end()
}

/// A push report's `[feed, tip, outcome]` triples.
pub(crate) fn pushed<S: Serializer>(
    v: &[(crate::FeedId, Oid, super::PushOutcome)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (feed, tip, outcome) in v {
        seq.serialize_element(&(feed, tip.to_string(), outcome))?;
    }
    seq.end()
}

/// `[name, id]` pairs.
pub(crate) fn named<S: Serializer>(v: &[(String, Oid)], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (name, o) in v {
        seq.serialize_element(&(name, o.to_string()))?;
    }
    seq.end()
}

/// `[id, text]` pairs.
pub(crate) fn contents<S: Serializer>(v: &[(Oid, String)], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (o, text) in v {
        seq.serialize_element(&(o.to_string(), text))?;
    }
    seq.end()
}

/// `[feed, tip]` pairs.
pub(crate) fn feed_tips<S: Serializer>(
    v: &[(crate::FeedId, Oid)],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for (feed, o) in v {
        seq.serialize_element(&(feed, o.to_string()))?;
    }
    seq.end()
}

/// A list of ids.
pub(crate) fn oids<S: Serializer>(v: &[Oid], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|o| o.to_string()))
}
