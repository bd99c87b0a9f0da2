//! Metrics in the Prometheus text format, the only user of `prometheus-client`.
//! Per-message figures are plain atomic counters; histograms (which take a short
//! lock) are observed once per batch or per request, never per delivered frame.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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
    pub handshakes: Counter,
    pub messages_received: Counter,
    pub messages_delivered: Counter,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub overlapped_batches: Counter,
    pub slow_consumer_closes: Counter,
    pub bus_published: Counter,
    pub bus_received: Counter,
    pub bus_reconnects: Counter,
    pub ws_resyncs: Counter,
    pub http_requests: Family<HttpLabels, Counter>,
    pub rate_limited: Counter,
    pub history_messages_cached: Counter,
    pub history_messages_stored: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("chat"),
            connections_open: Gauge::default(),
            handshakes: Counter::default(),
            messages_received: Counter::default(),
            messages_delivered: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 14)),
            overlapped_batches: Counter::default(),
            slow_consumer_closes: Counter::default(),
            bus_published: Counter::default(),
            bus_received: Counter::default(),
            bus_reconnects: Counter::default(),
            ws_resyncs: Counter::default(),
            http_requests: Family::default(),
            rate_limited: Counter::default(),
            history_messages_cached: Counter::default(),
            history_messages_stored: Counter::default(),
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
            "Messages published to Redis",
            self.bus_published.clone(),
        );
        r.register(
            "bus_received",
            "Messages received from other nodes",
            self.bus_received.clone(),
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
    }
}
