//! Prometheus metrics (`GET /metrics`), on `prometheus-client`: one registry per server
//! instance (no global recorder), so in-process tests each get their own.

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of HTTP request counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route template (`/api/v1/channels`), never the raw path.
    pub route: String,
    /// The answer's status code.
    pub status: u16,
}

/// Labels of webhook counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `slack_events`, `graph_notifications`, `graph_lifecycle`.
    pub endpoint: String,
    /// `stored`, `handshake`, `rejected`, `unavailable`.
    pub outcome: String,
}

/// Labels of relay delivery counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `delivered`, `retried` or `failed` (dead-lettered).
    pub outcome: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Webhook deliveries by endpoint and outcome.
    pub webhooks: Family<WebhookLabels, Counter>,
    /// Inbound items stored in the inbox.
    pub inbound_items: Counter,
    /// Delivery attempts of this process's relay workers, by outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Platform webhook deliveries by outcome",
            webhooks.clone(),
        );
        let inbound_items = Counter::default();
        registry.register(
            "inbound_items",
            "Inbound events, hints and signals stored",
            inbound_items.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts of the relay workers by outcome",
            deliveries.clone(),
        );
        Metrics {
            registry,
            requests,
            webhooks,
            inbound_items,
            deliveries,
        }
    }

    /// Counts one webhook delivery.
    pub fn webhook(&self, endpoint: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                endpoint: endpoint.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts one delivery attempt with `outcome` (`delivered`, `retried`, `failed`).
    pub fn delivery(&self, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
