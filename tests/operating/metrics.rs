//! `GET /metrics`: a real Prometheus server scrapes sluice and its HTTP API shows the
//! series the test's traffic implies; the endpoint moves to its own address with
//! `--metrics-listen` and goes away with `--no-metrics`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::harness::prometheus::Prometheus;
use crate::harness::{Answer, Host, guest};

const SECRET: &str = "shopify-webhook-secret";

fn shop_and_trap() -> crate::harness::HostBuilder {
    Host::builder()
        .plugin(
            "shop",
            guest("shop"),
            Some(&format!(
                "[configuration]\nshopName = \"acme-store\"\nwebhookSecret = {SECRET:?}\n"
            )),
        )
        .plugin("trap", guest("trap"), None)
}

/// An `orders/create` call to the shop, signed when `signed`; unsigned ones get 401.
fn order(host: &Host, signed: bool) -> Answer {
    let body = r#"{"id":1,"confirmation_number":"A1","created_at":"2024-07-01T10:00:00-04:00","currency":"EUR","current_subtotal_price":"1.00","current_total_discounts":"0.00","current_total_price":"1.00","current_total_tax":"0.00","customer_locale":"fr","order_status_url":"https://acme.example/orders/1","line_items":[],"note":null}"#;
    let mut request = host
        .client()
        .post(host.webhook_url("shop"))
        .header("content-type", "application/json")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-shop-domain", "acme-store.myshopify.com")
        .body(body);
    if signed {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        request = request.header("x-shopify-hmac-sha256", signature);
    }
    host.send(request)
}

/// `host:port` of a base URL.
fn target(base: &str) -> &str {
    base.trim_start_matches("http://")
}

#[test]
fn prometheus_scrapes_the_requests_outcomes_and_state_the_traffic_implies() {
    let host = shop_and_trap().start();
    for signed in [true, false, true, false, true] {
        let answer = order(&host, signed);
        assert_eq!(answer.status, if signed { 200 } else { 401 }, "{}", answer.body);
    }
    let trapped = host.post(&format!("{}/misbehave", host.webhook_url("trap")), "{}");
    assert_eq!(trapped.status, 500, "{}", trapped.body);

    let prometheus = Prometheus::scraping(target(&host.base), "/metrics");
    prometheus.wait_for_value("up{job=\"sluice\"}", 1.0);
    prometheus.wait_for_value("sum(sluice_webhook_requests_total{installation=\"shop\"})", 5.0);
    prometheus.wait_for_value(
        "sluice_webhook_requests_total{installation=\"shop\",status=\"4xx\"}",
        2.0,
    );
    prometheus.wait_for_value(
        "sluice_webhook_requests_total{installation=\"shop\",status=\"2xx\"}",
        3.0,
    );
    prometheus.wait_for_value(
        "sluice_webhook_request_duration_seconds_count{installation=\"shop\"}",
        5.0,
    );
    // The plugin answered every one of them itself, 401s included.
    prometheus.wait_for_value(
        "sluice_plugin_calls_total{installation=\"shop\",operation=\"webhook\",outcome=\"ok\"}",
        5.0,
    );
    prometheus.wait_for_value(
        "sluice_plugin_calls_total{installation=\"trap\",operation=\"webhook\",outcome=\"trap\"}",
        1.0,
    );
    prometheus.wait_for_value(
        "sluice_webhook_requests_total{installation=\"trap\",status=\"5xx\"}",
        1.0,
    );
    prometheus.wait_for_value("sluice_installations{status=\"active\"}", 2.0);
    prometheus.wait_for_value("sluice_trigger_queue_depth{status=\"queued\"}", 0.0);
    prometheus.wait_for_value("sluice_stream_clients", 0.0);
    // Three orders became events: each committed with its outbox entry, in some number
    // of group commits.
    let commits = prometheus
        .value("sluice_store_commit_batch_size_sum{database=\"store\"}")
        .expect("the store's commits are measured");
    assert!(commits >= 3.0, "{commits}");
    // Every call's instance memory is measured: register and the five webhook calls.
    prometheus.wait_for_value("sum(sluice_plugin_calls_total{installation=\"shop\"})", 6.0);
    prometheus.wait_for_value("sluice_plugin_memory_bytes_count{installation=\"shop\"}", 6.0);
    // No per-request labels: every series of the requests counter names an installation
    // and a status class, nothing else.
    for series in prometheus.query("sluice_webhook_requests_total") {
        let mut labels: Vec<&String> = series["metric"].as_object().unwrap().keys().collect();
        labels.sort();
        assert_eq!(
            labels,
            ["__name__", "installation", "instance", "job", "status"],
            "{series}"
        );
    }
}

#[test]
fn metrics_are_public_on_the_main_listener_and_listed_as_such() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let answer = host.send(host.client().get(host.url("/metrics")));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        answer.headers
    );
    // The installation's register call, counted.
    assert!(
        answer
            .body
            .contains("sluice_plugin_calls_total{installation=\"webhook\",operation=\"register\",outcome=\"ok\"} 1\n"),
        "{}",
        answer.body
    );
    let routes = host.api_get("/v1/admin/routes").json();
    let listed = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|route| route["path"] == "/metrics")
        .unwrap_or_else(|| panic!("/metrics is not in the route table: {routes}"));
    assert_eq!(listed["access"], "public");
}

#[test]
fn metrics_listen_moves_metrics_and_health_to_their_own_address() {
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .start();
    let metrics = host
        .metrics_base
        .clone()
        .expect("the ready line names the metrics address");
    assert_ne!(metrics, host.base);
    for path in ["/metrics", "/healthz", "/readyz"] {
        let answer = host.send(host.client().get(format!("{metrics}{path}")));
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    let main = host.send(host.client().get(host.url("/metrics")));
    assert_eq!(main.status, 404, "not on the main listener any more: {}", main.body);
    let prometheus = Prometheus::scraping(target(&metrics), "/metrics");
    prometheus.wait_for_value("up{job=\"sluice\"}", 1.0);
    prometheus.wait_for_value("sluice_installations{status=\"active\"}", 1.0);
}

#[test]
fn no_metrics_switches_them_off() {
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .arg("--no-metrics")
        .start();
    let answer = host.send(host.client().get(host.url("/metrics")));
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(host.send(host.client().get(host.url("/readyz"))).status, 200);
}
