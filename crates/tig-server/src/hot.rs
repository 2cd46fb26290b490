//! The hot path: a plain `GET`/`HEAD /<h>.tig` of a small content object that
//! the store holds in memory ([`Store::hot`]) is answered before the router,
//! with the status, headers and bytes [`crate::read::get`] would send for it.
//!
//! "Plain" means no query and none of the headers that change the answer
//! (`Range`, `If-Range`, `If-None-Match`): anything else, and every miss, goes
//! through the router as before. A hot object is content (it hashes to its
//! name, checked when a single read cached it, or by the first single read after
//! a burst cached it), so it is never a slot, a write-only
//! channel or a cluster miss, and needs no key. The request is still observed
//! (metrics, access log) by [`crate::access`].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, header};
use bytes::Bytes;
use tig_core::ObjectId;
use tig_store::{Kind, ObjectMeta, Store};

use crate::conditional::{Validators, part_status};
use crate::endpoint::{Endpoint, parse};
use crate::handlers::OCTET_STREAM;

type Lookup = dyn Fn(&ObjectId) -> Option<Bytes> + Send + Sync;

/// A store's [`Store::hot`] without its type, for the accept loops.
#[derive(Clone)]
pub(crate) struct Hot(Arc<Lookup>);

impl Hot {
    /// Looks objects up in `store`.
    pub(crate) fn of<S: Store>(store: Arc<S>) -> Self {
        Self(Arc::new(move |id| store.hot(id)))
    }

    /// The reply to `req` if it is a plain read of a hot object.
    pub(crate) fn reply<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let head = match *req.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return None,
        };
        let h = req.headers();
        if req.uri().query().is_some()
            || h.contains_key(header::RANGE)
            || h.contains_key(header::IF_RANGE)
            || h.contains_key(header::IF_NONE_MATCH)
        {
            return None;
        }
        // The router's own parser, so the hot path never reads a path differently.
        let id = match parse(req.method(), req.uri().path(), None).ok()?.0 {
            Endpoint::Get(id) | Endpoint::Head(id) => id,
            _ => return None,
        };
        let bytes = (self.0)(&id)?;
        let len = bytes.len() as u64;
        let meta = ObjectMeta {
            len,
            kind: Kind::Content,
            version: String::new(),
        };
        let mut resp = Response::new(if head {
            Body::empty()
        } else {
            Body::from(bytes)
        });
        // The same headers, in the same order, as `read::get` and `read::head`.
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        Validators::of(id, &meta).apply(resp.headers_mut());
        part_status(&mut resp, &(0..len), len, false);
        Some(resp)
    }
}
