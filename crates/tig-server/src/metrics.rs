//! Prometheus metrics: counted in atomics on the hot path, encoded with
//! `prometheus-client` when scraped.
//!
//! Per request the server touches only pre-resolved handles: the
//! `{method,status}` counter is looked up in a fixed table of `OnceLock`s (the
//! label family's lock is taken once per combination, ever), the duration
//! histogram is a row of atomic buckets, and byte counters are single atomic adds.
//! Nothing allocates or locks per request.
//!
//! `tig_objects_stored` and `tig_bytes_stored` come from [`Store::usage`], a
//! census of the store (one directory walk; one bucket listing on S3), so they are
//! exact whatever wrote or deleted — the sweeper, offload, another process on the
//! same directory, another instance on the same bucket. A census is not taken per
//! scrape but reused (see [`Metrics::render`]):
//! - while nothing was written through this instance, for [`CENSUS_EVERY`] (or
//!   [`CENSUS_DUTY`] times its own duration, if longer), so writes by others show
//!   within that;
//! - after a write, delete or sweep through this instance, a census that took
//!   under [`CHEAP_CENSUS`] is retaken at the next scrape (a small store's gauges
//!   are exact at once), a costlier one after [`CENSUS_DUTY`] times its duration.
//!
//! So a walk never takes more than about a tenth of the time, however often
//! Prometheus scrapes. Concurrent scrapes share one census.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use tig_store::Store;

/// The `Content-Type` of a scrape reply (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a census is reused while nothing was written through this instance.
pub const CENSUS_EVERY: Duration = Duration::from_secs(30);
/// A census faster than this is retaken at the first scrape after a write.
pub const CHEAP_CENSUS: Duration = Duration::from_millis(50);
/// A census is reused for at least this many times its own duration.
pub const CENSUS_DUTY: u32 = 10;

/// How long a census that took `took` is reused; `changed`: something was written
/// or deleted through this instance since it was taken.
fn census_reuse(took: Duration, changed: bool) -> Duration {
    let duty = took.saturating_mul(CENSUS_DUTY);
    match changed {
        true if took < CHEAP_CENSUS => Duration::ZERO,
        true => duty,
        false => duty.max(CENSUS_EVERY),
    }
}

/// HTTP methods as a small closed label set (anything else is `OTHER`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum MethodLabel {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `PUT`.
    Put,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
    /// Any other method.
    Other,
}

impl MethodLabel {
    const ALL: [Self; 6] = [
        Self::Get,
        Self::Head,
        Self::Put,
        Self::Post,
        Self::Delete,
        Self::Other,
    ];

    /// The label of an HTTP method.
    pub fn of(m: &http::Method) -> Self {
        match *m {
            http::Method::GET => Self::Get,
            http::Method::HEAD => Self::Head,
            http::Method::PUT => Self::Put,
            http::Method::POST => Self::Post,
            http::Method::DELETE => Self::Delete,
            _ => Self::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Put => "PUT",
            Self::Post => "POST",
            Self::Delete => "DELETE",
            Self::Other => "OTHER",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// How a forwarded read ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ForwardResult {
    /// A peer's reply was relayed.
    Ok,
    /// No peer had the object.
    NotFound,
    /// A peer served bytes that do not hash to the name; nothing was relayed from it.
    BadHash,
    /// A peer offered a slot over a connection that is not verified; not relayed.
    Refused,
    /// Every peer failed or timed out.
    Error,
}

impl ForwardResult {
    const ALL: [Self; 5] = [
        Self::Ok,
        Self::NotFound,
        Self::BadHash,
        Self::Refused,
        Self::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::BadHash => "bad_hash",
            Self::Refused => "refused",
            Self::Error => "error",
        }
    }
}

impl EncodeLabelValue for ForwardResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodOnly {
    method: MethodLabel,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: ForwardResult,
}

/// Upper bounds (seconds) of the request-duration buckets.
const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations kept in atomics (one add per bucket hit, one for the
/// sum): `prometheus-client`'s own histogram takes a lock per observation.
#[derive(Debug, Clone, Default)]
pub struct DurationHistogram(Arc<HistogramInner>);

#[derive(Debug, Default)]
struct HistogramInner {
    /// Per-bucket (not cumulative) counts; the last is `+Inf`.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| s <= *b).unwrap_or(BOUNDS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        let mut count = 0;
        for (i, b) in self.0.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            buckets.push((BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Status codes a request counter is cached for (others go through the family).
const STATUS_MIN: u16 = 100;
const STATUS_SPAN: usize = 500;

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_cache: Box<[OnceLock<Counter>]>,
    durations: [DurationHistogram; 6],
    body_in: Counter,
    body_out: Counter,
    objects: Gauge,
    bytes: Gauge,
    forwards: [Counter; 5],
    retention_deleted: Counter,
    auth_failures: Counter,
    offloaded: Counter,
    /// When the last census started and how long it took.
    census: tokio::sync::Mutex<Option<(Instant, Duration)>>,
    /// Set by writes through this instance since the last census started.
    changed: AtomicBool,
    /// How many censuses were taken (for tests).
    censuses: AtomicU64,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "tig_http_requests",
            "HTTP requests answered, by method and status (probes and scrapes excluded)",
            requests.clone(),
        );
        let duration_family = Family::<MethodOnly, DurationHistogram>::default();
        registry.register_with_unit(
            "tig_http_request_duration",
            "Time from request to the last byte of the reply, by method",
            Unit::Seconds,
            duration_family.clone(),
        );
        let durations = MethodLabel::ALL
            .map(|method| duration_family.get_or_create_owned(&MethodOnly { method }));
        let bytes_family = Family::<Direction, Counter>::default();
        registry.register(
            "tig_http_body_bytes",
            "Body bytes received (in) and sent (out)",
            bytes_family.clone(),
        );
        let body_in = bytes_family.get_or_create_owned(&Direction { direction: "in" });
        let body_out = bytes_family.get_or_create_owned(&Direction { direction: "out" });
        let objects = Gauge::default();
        registry.register(
            "tig_objects_stored",
            "Objects in the store (content and slots), from the last census",
            objects.clone(),
        );
        let bytes = Gauge::default();
        registry.register(
            "tig_bytes_stored",
            "Bytes in the store, from the last census",
            bytes.clone(),
        );
        let forward_family = Family::<ResultLabel, Counter>::default();
        registry.register(
            "tig_cluster_forwards",
            "Reads of objects this instance lacks, asked of its peers, by outcome",
            forward_family.clone(),
        );
        let forwards = ForwardResult::ALL
            .map(|result| forward_family.get_or_create_owned(&ResultLabel { result }));
        let retention_deleted = Counter::default();
        registry.register(
            "tig_retention_deleted",
            "Objects deleted by the retention sweeper",
            retention_deleted.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "tig_auth_failures",
            "Requests refused for a wrong or missing API key (401)",
            auth_failures.clone(),
        );
        let offloaded = Counter::default();
        registry.register(
            "tig_offloaded_objects",
            "Objects handed to a peer by offload-before-exit",
            offloaded.clone(),
        );
        let request_cache = (0..MethodLabel::ALL.len() * STATUS_SPAN)
            .map(|_| OnceLock::new())
            .collect();
        Self {
            registry,
            requests,
            request_cache,
            durations,
            body_in,
            body_out,
            objects,
            bytes,
            forwards,
            retention_deleted,
            auth_failures,
            offloaded,
            census: tokio::sync::Mutex::new(None),
            changed: AtomicBool::new(false),
            censuses: AtomicU64::new(0),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, method: MethodLabel, status: u16) {
        let slot = status
            .checked_sub(STATUS_MIN)
            .map(usize::from)
            .filter(|s| *s < STATUS_SPAN)
            .map(|s| method.index() * STATUS_SPAN + s);
        match slot.and_then(|i| self.request_cache.get(i)) {
            Some(cell) => {
                cell.get_or_init(|| {
                    self.requests
                        .get_or_create_owned(&RequestLabels { method, status })
                })
                .inc();
            }
            None => {
                self.requests
                    .get_or_create(&RequestLabels { method, status })
                    .inc();
            }
        }
        if status == 401 {
            self.auth_failures.inc();
        }
    }

    /// Records how long a request took.
    pub fn duration(&self, method: MethodLabel, d: Duration) {
        self.durations[method.index()].observe(d);
    }

    /// Counts request body bytes received.
    pub fn bytes_in(&self, n: u64) {
        self.body_in.inc_by(n);
    }

    /// Counts reply body bytes sent.
    pub fn bytes_out(&self, n: u64) {
        self.body_out.inc_by(n);
    }

    /// Counts one forwarded read by its outcome.
    pub fn forward(&self, result: ForwardResult) {
        if let Some(i) = ForwardResult::ALL.iter().position(|r| *r == result) {
            self.forwards[i].inc();
        }
    }

    /// Counts objects deleted by the sweeper.
    pub fn retention_deleted(&self, n: usize) {
        self.retention_deleted.inc_by(n as u64);
        if n > 0 {
            self.store_changed();
        }
    }

    /// Counts objects offloaded to peers.
    pub fn offloaded(&self, n: usize) {
        self.offloaded.inc_by(n as u64);
    }

    /// Notes that something was written or deleted through this instance, so the
    /// next scrape may retake the census (see the module doc).
    pub fn store_changed(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    /// How many store censuses [`Metrics::render`] has taken.
    pub fn censuses(&self) -> u64 {
        self.censuses.load(Ordering::Relaxed)
    }

    /// Renders every metric as OpenMetrics text, retaking the store census first
    /// if the last one is too old to reuse (see the module doc).
    pub async fn render<S: Store>(&self, store: &S) -> String {
        {
            let mut last = self.census.lock().await;
            let due = match *last {
                None => true,
                Some((at, took)) => {
                    let changed = self.changed.load(Ordering::Relaxed);
                    at.elapsed() >= census_reuse(took, changed)
                }
            };
            if due {
                // Cleared before the walk: a write during it marks the next one due.
                self.changed.store(false, Ordering::Relaxed);
                let start = Instant::now();
                let res = store.usage().await;
                *last = Some((start, start.elapsed()));
                self.censuses.fetch_add(1, Ordering::Relaxed);
                match res {
                    Ok(u) => {
                        self.objects
                            .set(i64::try_from(u.objects).unwrap_or(i64::MAX));
                        self.bytes.set(i64::try_from(u.bytes).unwrap_or(i64::MAX));
                    }
                    Err(e) => tracing::warn!(error = %e, "metrics: store census failed"),
                }
            }
        }
        let mut out = String::with_capacity(4096);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[tokio::test]
    async fn counts_render_as_prometheus_text() {
        let m = Metrics::new();
        m.request(MethodLabel::Get, 200);
        m.request(MethodLabel::Get, 200);
        m.request(MethodLabel::Put, 401);
        m.request(MethodLabel::Other, 999);
        m.duration(MethodLabel::Get, Duration::from_millis(3));
        m.duration(MethodLabel::Get, Duration::from_secs(20));
        m.bytes_in(5);
        m.bytes_out(7);
        m.forward(ForwardResult::BadHash);
        let store = tig_store::MemStore::new();
        let text = m.render(&store).await;
        assert_eq!(
            line(
                &text,
                "tig_http_requests_total{method=\"GET\",status=\"200\"}"
            ),
            Some("tig_http_requests_total{method=\"GET\",status=\"200\"} 2")
        );
        assert!(text.contains("tig_http_requests_total{method=\"OTHER\",status=\"999\"} 1"));
        assert!(text.contains("tig_auth_failures_total 1"));
        assert!(text.contains("tig_http_body_bytes_total{direction=\"in\"} 5"));
        assert!(text.contains("tig_http_body_bytes_total{direction=\"out\"} 7"));
        assert!(text.contains("tig_cluster_forwards_total{result=\"bad_hash\"} 1"));
        assert!(
            text.contains(
                "tig_http_request_duration_seconds_bucket{le=\"0.005\",method=\"GET\"} 1"
            ) || text.contains(
                "tig_http_request_duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("tig_http_request_duration_seconds_count{method=\"GET\"} 2"));
        assert!(text.contains("tig_objects_stored 0"));
        assert!(text.contains("tig_bytes_stored 0"));
        assert_eq!(m.durations[0].count(), 2);
    }

    #[test]
    fn census_reuse_bounds_the_walks() {
        let ms = Duration::from_millis;
        // Idle: every 30 s, or 10x a slow census.
        assert_eq!(census_reuse(ms(1), false), CENSUS_EVERY);
        assert_eq!(census_reuse(ms(5000), false), ms(50_000));
        // After a write: a cheap census at once, a costly one after 10x its time.
        assert_eq!(census_reuse(ms(1), true), Duration::ZERO);
        assert_eq!(census_reuse(ms(400), true), ms(4000));
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_reuse_the_census_until_a_write_or_its_age() {
        use tig_store::{SlotWrite, body_from_bytes};
        let m = Metrics::new();
        let store = tig_store::MemStore::new();
        let objects = |text: &str| line(text, "tig_objects_stored ").map(str::to_owned);
        assert_eq!(
            objects(&m.render(&store).await).as_deref(),
            Some("tig_objects_stored 0")
        );
        // Written behind the server's back: the census is reused, nothing walks.
        store
            .put_content(body_from_bytes("a"), 10)
            .await
            .expect("put");
        for _ in 0..5 {
            m.render(&store).await;
        }
        assert_eq!(m.censuses(), 1);
        // A write through this instance: the next scrape counts again.
        m.store_changed();
        let text = m.render(&store).await;
        assert_eq!(objects(&text).as_deref(), Some("tig_objects_stored 1"));
        assert_eq!(m.censuses(), 2);
        m.render(&store).await;
        assert_eq!(m.censuses(), 2, "no write since");
        // Unannounced writes show once the census is CENSUS_EVERY old.
        let slot = tig_store::ObjectId::digest(b"slot");
        store
            .put_slot(slot, body_from_bytes("b"), 10, SlotWrite::Replace)
            .await
            .expect("slot");
        tokio::time::advance(CENSUS_EVERY).await;
        let text = m.render(&store).await;
        assert_eq!(objects(&text).as_deref(), Some("tig_objects_stored 2"));
        assert_eq!(m.censuses(), 3);
    }
}
