//! OpenTelemetry traces: sluice's `tracing` spans (a request, a plugin call, each host
//! import, a store commit, a trigger event's run, a delivery attempt) exported over
//! OTLP/HTTP when an endpoint is configured (see [`crate::config::TelemetryConfig`]).
//!
//! The spans made for traces have their own target ([`TARGET`]): the log leaves them out,
//! so that a log line shows the same span context with traces on or off. Unconfigured,
//! no layer wants them (every such span macro stops at its callsite's cached interest),
//! and the helpers here answer at once ([`enabled`] is false). The spans that only mean
//! something inside a trace (a plugin call, a host import, a store commit, an outbound
//! call) are made only [`in_trace`]: a plugin's definition call at load starts none.
//!
//! The W3C trace context comes in on requests (`traceparent`), is kept with what a write
//! published to the outbox (so that the delivery of an event continues the trace that
//! recorded it, on any replica), and goes out on delivery POSTs and on the plugins'
//! outbound calls. Log lines inside a trace carry its id ([`LogTraceIds`] and
//! [`WithTraceId`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use crate::config::TracesSettings;

/// The target of the spans made for traces: the OpenTelemetry layer takes these and
/// only these, the log none of them ([`for_the_log`]).
pub const TARGET: &str = "sluice::traces";

/// The level of the spans made for traces (all `info_span!`): what the layers that only
/// look at spans need to be given, so that the levels below stay off unless the log asks.
pub const SPAN_LEVEL: tracing::level_filters::LevelFilter = tracing::level_filters::LevelFilter::INFO;

/// Whether spans are exported (set once, at start).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long one export may take; the batch is dropped after it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a collector's answer read.
const ANSWER_BYTES: usize = 64 * 1024;

/// Whether traces are exported: the helpers below do nothing otherwise.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the running code is inside a trace (under a span [`begin`] started): the
/// spans that belong to one are made only then.
pub fn in_trace() -> bool {
    enabled() && current_trace_id().is_some()
}

/// Whether the log takes what `metadata` describes: everything but the spans made for
/// traces.
pub fn for_the_log(metadata: &tracing::Metadata<'_>) -> bool {
    !(metadata.is_span() && metadata.target() == TARGET)
}

/// `keep` as a filter that takes nothing more verbose than `most_verbose` and says so.
/// Every filter needs that hint: one without it turns every level on at the call sites,
/// so each `trace!` in the dependencies (wasmtime's included) would reach the subscriber,
/// through the `log` bridge, before being refused.
pub fn up_to(
    most_verbose: tracing::level_filters::LevelFilter,
    keep: fn(&tracing::Metadata<'_>) -> bool,
) -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(move |metadata| most_verbose >= *metadata.level() && keep(metadata))
        .with_max_level_hint(most_verbose)
}

/// Exporting traces: the provider to flush at the end.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Starts exporting to `settings`' endpoint, sending through `runtime`. Answers the
    /// handle to flush at the end and the layer that turns spans into OpenTelemetry ones.
    pub fn start(
        settings: &TracesSettings,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<(Tracing, impl Layer<Registry> + Send + Sync + 'static)> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OtlpClient::new(runtime))
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.traces_endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("sluice");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(up_to(SPAN_LEVEL, |metadata| {
                metadata.is_span() && metadata.target() == TARGET
            }));
        ENABLED.store(true, Ordering::Relaxed);
        Ok((Tracing { provider }, layer))
    }

    /// Sends the spans not sent yet and stops; called from outside the async runtime,
    /// which must still be running (the export goes through it).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("warning: the last traces could not be sent: {error}");
        }
    }
}

/// The trace context an incoming request carries (`traceparent`, `tracestate`); empty
/// when it has none or traces are off.
pub fn incoming(headers: &HeaderMap) -> opentelemetry::Context {
    if !enabled() {
        return opentelemetry::Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The trace context a stored `traceparent` names.
pub fn from_traceparent(traceparent: &str) -> opentelemetry::Context {
    let headers: HeaderMap = [(
        http::header::HeaderName::from_static("traceparent"),
        match http::HeaderValue::from_str(traceparent) {
            Ok(value) => value,
            Err(_) => return opentelemetry::Context::new(),
        },
    )]
    .into_iter()
    .collect();
    TraceContextPropagator::new().extract(&HeaderExtractor(&headers))
}

/// Makes `span` the first sluice span of a trace: a child of `parent` when that holds a
/// remote span (an incoming `traceparent`), else of a new trace; its log lines, and
/// those of its children, carry the trace id.
pub fn begin(span: &Span, parent: opentelemetry::Context) {
    if !enabled() || span.is_disabled() {
        return;
    }
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            data.extensions_mut().insert(LoggedTraceId(trace_id));
        }
    });
}

/// Puts `span`'s trace context on an outgoing request (`traceparent`).
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if !enabled() || span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The `traceparent` of the current span, kept with what a write publishes; `None` when
/// traces are off or nothing is traced. The store's writer thread answers the one of the
/// write it runs ([`publishing_under`]).
pub fn current_traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    if let Some(kept) = PUBLISHING.with(|publishing| publishing.borrow().clone()) {
        return Some(kept);
    }
    traceparent_of(&Span::current())
}

/// The `traceparent` header value of `span`.
pub fn traceparent_of(span: &Span) -> Option<String> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let mut headers = HeaderMap::new();
    inject(span, &mut headers);
    headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

thread_local! {
    /// The `traceparent` of the write the store's writer thread is running.
    static PUBLISHING: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `work` (a write, on the store's writer thread) with `traceparent` as the one
/// [`current_traceparent`] answers.
pub fn publishing_under<T>(traceparent: Option<String>, work: impl FnOnce() -> T) -> T {
    if traceparent.is_none() {
        return work();
    }
    PUBLISHING.with(|publishing| *publishing.borrow_mut() = traceparent);
    let result = work();
    PUBLISHING.with(|publishing| *publishing.borrow_mut() = None);
    result
}

/// The trace id a span's log lines carry.
#[derive(Clone, Copy)]
struct LoggedTraceId(TraceId);

thread_local! {
    /// The trace ids of the spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<Option<TraceId>>> = const { RefCell::new(Vec::new()) };
}

/// Follows which trace the running code is in, for [`WithTraceId`]: a span's trace id
/// (set by [`begin`]) passes to its children, and the innermost entered span's is the
/// current one on its thread.
pub struct LogTraceIds;

impl<S> Layer<S> for LogTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let inherited = span
            .parent()
            .and_then(|parent| parent.extensions().get::<LoggedTraceId>().copied());
        if let Some(trace_id) = inherited {
            span.extensions_mut().insert(trace_id);
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let trace_id = ctx
            .span(id)
            .and_then(|span| span.extensions().get::<LoggedTraceId>().map(|logged| logged.0));
        ENTERED.with(|entered| entered.borrow_mut().push(trace_id));
    }

    fn on_exit(&self, _id: &tracing::span::Id, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        ENTERED.with(|entered| entered.borrow_mut().pop());
    }
}

fn current_trace_id() -> Option<TraceId> {
    ENTERED.with(|entered| entered.borrow().last().copied().flatten())
}

/// A log line format with the trace id added (`trace_id=...` at the end of a text line,
/// a `trace_id` field of a JSON one) when the line is logged inside a trace.
pub struct WithTraceId<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceId<F> {
    pub fn text(inner: F) -> WithTraceId<F> {
        WithTraceId { inner, json: false }
    }

    pub fn json(inner: F) -> WithTraceId<F> {
        WithTraceId { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    F: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Some(trace_id) = current_trace_id() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // The line as it would be, then the id before its end. A text format colours
        // its lines by its own setting (`Format::with_ansi`), not by this buffer's.
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        match line.strip_suffix('}').filter(|_| self.json) {
            Some(object) => writeln!(writer, "{object},\"trace_id\":\"{trace_id}\"}}"),
            // Styled as the other fields are: the name in italics, `=` dimmed.
            None if writer.has_ansi_escapes() => {
                writeln!(writer, "{line} \x1b[3mtrace_id\x1b[0m\x1b[2m=\x1b[0m{trace_id}")
            }
            None => writeln!(writer, "{line} trace_id={trace_id}"),
        }
    }
}

/// The HTTP client spans are exported with: hyper's, as delivery uses, on the async
/// runtime (the exporter's batch thread waits for the answer).
#[derive(Debug)]
struct OtlpClient {
    client: hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl OtlpClient {
    fn new(runtime: tokio::runtime::Handle) -> OtlpClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        OtlpClient {
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https),
            runtime,
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request.map(Full::new)))
                .await
                .map_err(|_| "no answer from the collector in time".to_string())?
                .map_err(|error| format!("cannot reach the collector: {error}"))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, ANSWER_BYTES)
                .collect()
                .await
                .map_err(|error| format!("cannot read the collector's answer: {error}"))?
                .to_bytes();
            Ok::<_, String>(Response::from_parts(parts, body))
        });
        match sent.await {
            Ok(answer) => answer.map_err(HttpError::from),
            Err(error) => Err(HttpError::from(format!("the export was stopped: {error}"))),
        }
    }
}
