//! Metrics in the Prometheus text format, the only user of `prometheus-client`.
//! Per-message figures are plain atomic counters; histograms (which take a short
//! lock) are observed once per batch or per request, never per delivered frame.
//! The tokio runtime's own figures are read at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub status: u16,
}

/// Everything the server counts.
pub struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    /// Chats with at least one local socket (rooms in the room map).
    pub rooms_open: Gauge,
    /// Chats this node's bus subscriber is subscribed to.
    pub bus_subscriptions: Gauge,
    pub handshakes: Counter,
    pub messages_received: Counter,
    pub messages_delivered: Counter,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub overlapped_batches: Counter,
    pub slow_consumer_closes: Counter,
    pub bus_published: Counter,
    /// Events dropped because the publish queue was full (Redis slow or
    /// down for this node): their users' sockets on other nodes catch up.
    pub bus_dropped: Counter,
    /// Publishes (a batch's events for one recipient) sent to Redis that it
    /// never confirmed (no answer in time, or an error): not sent again;
    /// their users catch up.
    pub bus_unconfirmed: Counter,
    pub bus_received: Counter,
    /// Bus events not delivered: not signed by this deployment, or for
    /// another user than their channel's.
    pub bus_refused: Counter,
    /// Payloads with a record signed by this deployment in a form this node
    /// cannot read (a newer node's): their users' sockets caught up.
    pub bus_unreadable: Counter,
    /// Usage reports heard from other nodes (their shared rate limits).
    pub bus_usage_reports: Counter,
    pub bus_reconnects: Counter,
    pub ws_resyncs: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub rate_limited: Counter,
    pub history_messages_cached: Counter,
    pub history_messages_stored: Counter,
    /// Reads a standby served (`DATABASE_READ_URLS`).
    pub standby_reads: Counter,
    /// Reads that went to the primary: no standby had replayed far enough.
    pub standby_misses: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("chat"),
            connections_open: Gauge::default(),
            rooms_open: Gauge::default(),
            bus_subscriptions: Gauge::default(),
            handshakes: Counter::default(),
            messages_received: Counter::default(),
            messages_delivered: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 14)),
            overlapped_batches: Counter::default(),
            slow_consumer_closes: Counter::default(),
            bus_published: Counter::default(),
            bus_dropped: Counter::default(),
            bus_unconfirmed: Counter::default(),
            bus_received: Counter::default(),
            bus_refused: Counter::default(),
            bus_unreadable: Counter::default(),
            bus_usage_reports: Counter::default(),
            bus_reconnects: Counter::default(),
            ws_resyncs: Counter::default(),
            http_requests: Family::default(),
            rate_limited: Counter::default(),
            history_messages_cached: Counter::default(),
            history_messages_stored: Counter::default(),
            standby_reads: Counter::default(),
            standby_misses: Counter::default(),
        };
        metrics.register_all();
        metrics
    }

    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            "websocket_connections_open",
            "WebSocket sessions open",
            self.connections_open.clone(),
        );
        r.register(
            "db_standby_reads",
            "Reads served by a standby (DATABASE_READ_URLS)",
            self.standby_reads.clone(),
        );
        r.register(
            "db_standby_misses",
            "Reads sent to the primary because no standby had replayed far enough",
            self.standby_misses.clone(),
        );
        r.register(
            "rooms_open",
            "Chats with at least one socket on this node",
            self.rooms_open.clone(),
        );
        r.register(
            "bus_subscriptions",
            "Chats this node is subscribed to on the bus",
            self.bus_subscriptions.clone(),
        );
        r.register(
            "websocket_handshakes",
            "WebSocket upgrades accepted",
            self.handshakes.clone(),
        );
        r.register(
            "messages_received",
            "Messages submitted (REST and WebSocket)",
            self.messages_received.clone(),
        );
        r.register(
            "messages_delivered",
            "Message frames queued to local sockets",
            self.messages_delivered.clone(),
        );
        r.register(
            "writer_batch_size",
            "Messages per group-commit batch",
            self.batch_size.clone(),
        );
        r.register(
            "writer_commit_seconds",
            "Time to store one batch",
            self.commit_seconds.clone(),
        );
        r.register(
            "writer_overlapped_batches",
            "Batches appended while the lane still settled the one before (heavy load)",
            self.overlapped_batches.clone(),
        );
        r.register(
            "slow_consumer_closes",
            "Sockets closed because their outbox filled",
            self.slow_consumer_closes.clone(),
        );
        r.register(
            "bus_published",
            "Events published to Redis, counted once Redis confirmed every publish of their batch",
            self.bus_published.clone(),
        );
        r.register(
            "bus_dropped",
            "Events dropped because the bus publish queue was full",
            self.bus_dropped.clone(),
        );
        r.register(
            "bus_unconfirmed",
            "Bus publishes (one per recipient and batch) Redis never confirmed; their users caught up from the store",
            self.bus_unconfirmed.clone(),
        );
        r.register(
            "bus_received",
            "Messages received from other nodes",
            self.bus_received.clone(),
        );
        r.register(
            "bus_refused",
            "Bus events refused: not signed by this deployment, or for another user",
            self.bus_refused.clone(),
        );
        r.register(
            "bus_unreadable",
            "Bus payloads holding a record of a form this node cannot read; their users caught up",
            self.bus_unreadable.clone(),
        );
        r.register(
            "bus_usage_reports",
            "Usage reports heard from other nodes, taken from this node's per-user rate limits",
            self.bus_usage_reports.clone(),
        );
        r.register(
            "bus_reconnects",
            "Redis subscription (re)connections",
            self.bus_reconnects.clone(),
        );
        r.register(
            "ws_resyncs",
            "Sockets that checked the store after their room's (re)subscription",
            self.ws_resyncs.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            self.http_requests.clone(),
        );
        r.register(
            "rate_limited",
            "Requests and events refused by a rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "history_messages_cached",
            "History page messages served from this node's cache",
            self.history_messages_cached.clone(),
        );
        r.register(
            "history_messages_stored",
            "History page messages read from the store",
            self.history_messages_stored.clone(),
        );
        r.register_collector(Box::new(RuntimeCollector));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn http_request(&self, route: &'static str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels { route, status })
            .inc();
    }
}

/// The tokio runtime's own figures, read at each scrape from the runtime the
/// scrape runs on (none outside one): its workers, live tasks and global queue,
/// and per worker the time spent busy and the times it parked (went to sleep
/// for want of work). Busy time over wall time is how loaded the runtime is;
/// parks per request or message show how often a worker slept and was woken.
#[derive(Debug)]
struct RuntimeCollector;

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let metrics = runtime.metrics();
        let gauges = [
            (
                "runtime_workers",
                "Runtime worker threads",
                metrics.num_workers(),
            ),
            (
                "runtime_alive_tasks",
                "Tasks alive in the runtime",
                metrics.num_alive_tasks(),
            ),
            (
                "runtime_global_queue_depth",
                "Tasks waiting in the runtime's shared queue",
                metrics.global_queue_depth(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let workers = 0..metrics.num_workers();
        let busy: Vec<f64> = workers
            .clone()
            .map(|w| metrics.worker_total_busy_duration(w).as_secs_f64())
            .collect();
        let parks: Vec<u64> = workers.map(|w| metrics.worker_park_count(w)).collect();
        per_worker(
            &mut encoder,
            "runtime_worker_busy_seconds",
            "Time each worker spent busy",
            &busy,
        )?;
        per_worker(
            &mut encoder,
            "runtime_worker_parks",
            "Times each worker parked for want of work",
            &parks,
        )
    }
}

/// One counter family with a `worker` label.
fn per_worker<N: Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[N],
) -> Result<(), std::fmt::Error>
where
    ConstCounter<N>: EncodeMetric,
{
    let kind = prometheus_client::metrics::MetricType::Counter;
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (worker, value) in values.iter().enumerate() {
        let labels = [("worker", worker.to_string())];
        ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        metrics.messages_received.inc_by(3);
        metrics.batch_size.observe(3.0);
        metrics.http_request("messages", 201);
        let text = metrics.render();
        assert!(text.contains("chat_messages_received_total 3"), "{text}");
        assert!(text.contains("chat_writer_batch_size_count 1"), "{text}");
        assert!(
            text.contains(r#"chat_http_requests_total{route="messages",status="201"} 1"#),
            "{text}"
        );
        assert!(!text.contains("chat_runtime"), "no runtime here: {text}");
    }

    #[test]
    fn every_metric_is_named_in_the_readme() {
        let readme = include_str!("../README.md");
        let text = Metrics::new().render();
        for line in text.lines() {
            let Some(described) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let mut words = described.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let shown = match kind {
                "counter" => format!("`{name}_total"),
                _ => format!("`{name}"),
            };
            assert!(readme.contains(&shown), "README's Operations: {shown}`");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_reads_the_runtime_it_runs_on() {
        let (_keep, waiting) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(waiting);
        let text = Metrics::new().render();
        assert!(text.contains("chat_runtime_workers 2\n"), "{text}");
        for worker in ["0", "1"] {
            for family in ["worker_busy_seconds_total", "worker_parks_total"] {
                let line = format!("chat_runtime_{family}{{worker=\"{worker}\"}} ");
                assert!(text.contains(&line), "{line} in {text}");
            }
        }
        let alive = text
            .lines()
            .find_map(|line| line.strip_prefix("chat_runtime_alive_tasks "))
            .and_then(|n| n.parse::<u64>().ok());
        assert!(alive.is_some_and(|n| n >= 1), "a task waits: {text}");
        task.abort();
    }
}
