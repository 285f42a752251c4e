//! The worker pool: claims queued trigger events and runs the trigger's plugin for each.
//!
//! One run, in order:
//! 1. the trigger still exists (else the event is cancelled) and the event's outcome is
//!    not already recorded (a run that finished just before a crash is not repeated);
//! 2. the bot (an installation, by id or name) is installed and ready;
//! 3. the event is resolved to its conversation (the session's, while fresh) and contact,
//!    and `trigger:event:received` is recorded on the conversation;
//! 4. the plugin's `handler` runs with operation `trigger-event`, `ctx.trigger` set, and
//!    the event's method, query, headers and body as the request;
//! 5. the outcome is recorded on the conversation (`trigger:execution:finished` or
//!    `trigger:execution:failed`, with the attempt, the plugin's log lines, what it
//!    created and what went wrong), then the queue learns it (done, retry later, failed).
//!
//! Step 5 writes the store before the queue, so a crash in between re-runs nothing: the
//! next attempt finds the outcome recorded and only completes the job.

use std::sync::Arc;

use serde_json::{Value, json};

use super::queue::{Finish, Job};
use super::{Jobs, TRIGGER_CHANNEL};
use crate::ids::record_id;
use crate::plugins::Installation;
use crate::runtime::{Answer, CallError, CallReport, PluginErrorKind, TriggerInfo, WebhookRequest, WebhookResponse};
use crate::store::{EventRecord, EventResolution, TriggerEventLink, TriggerRecord};
use crate::telemetry::{metrics, traces};
use crate::time::{iso8601, now_ms};

/// Longest part of a plugin's response body kept in the outcome event.
const MAX_RESPONSE_BODY: usize = 4096;

/// Claims due events whenever a worker is free and runs each in its own task, until the
/// host stops.
pub(super) async fn dispatch(jobs: Arc<Jobs>) {
    loop {
        if jobs.stopping() {
            return;
        }
        let first = tokio::select! {
            permit = jobs.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = jobs.stop.notified() => return,
        };
        if jobs.stopping() {
            return;
        }
        let free = jobs.slots.available_permits() + 1;
        let claimed = match jobs.queue.claim(free).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot claim trigger events; trying again in a second");
                drop(first);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if claimed.jobs.is_empty() {
            drop(first);
            let wait = claimed
                .next_due
                .map(|at| std::time::Duration::from_millis((at - now_ms()).clamp(1, 60_000) as u64))
                .unwrap_or(std::time::Duration::from_secs(60));
            tokio::select! {
                _ = jobs.queue.work.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = jobs.stop.notified() => return,
            }
            continue;
        }
        let mut first = Some(first);
        for job in claimed.jobs {
            let permit = match first.take() {
                Some(permit) => permit,
                // At most `free` jobs were claimed, so a permit is at hand.
                None => match jobs.slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let jobs = jobs.clone();
            tokio::spawn(async move {
                let (id, trigger_id) = (job.id.clone(), job.trigger_id.clone());
                let span = run_span(&job);
                let finish = tracing::Instrument::instrument(run(&jobs, job), span.clone()).await;
                if !matches!(finish, Finish::Done) {
                    span.record("otel.status_code", "ERROR");
                }
                count_run(&jobs, &trigger_id, &finish);
                let recorded = tracing::Instrument::instrument(jobs.queue.finish(&id, finish), span).await;
                if let Err(error) = recorded {
                    // The job stays `running` and runs again at the next start.
                    tracing::error!(event = %id, error = %format!("{error:#}"), "cannot record the end of a trigger event in the queue");
                }
                drop(permit);
            });
        }
    }
}

/// Counts an attempt's end under the installation its trigger's events go to.
fn count_run(jobs: &Jobs, trigger_id: &str, finish: &Finish) {
    let outcome = match finish {
        Finish::Done => "ok",
        Finish::Retry { .. } => "failed",
        Finish::Failed(_) => "given_up",
        Finish::Cancelled(_) => "cancelled",
    };
    let installation = jobs
        .trigger(trigger_id)
        .map(|trigger| jobs.installation_name(&trigger))
        .unwrap_or_default();
    metrics().trigger_run(&installation, outcome);
}

/// The span of one attempt of a trigger event, the child of the `traceparent` the event
/// was sent with, if any.
fn run_span(job: &Job) -> tracing::Span {
    let span = tracing::info_span!(
        target: traces::TARGET,
        "trigger event",
        otel.name = "trigger event",
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        trigger = %job.trigger_id,
        event = %job.id,
        attempt = job.attempt,
    );
    if traces::enabled() {
        let headers: http::HeaderMap = job
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.parse::<http::HeaderName>().ok()?, value.parse().ok()?)))
            .collect();
        traces::begin(&span, traces::incoming(&headers));
    }
    span
}

/// Why an attempt did not succeed.
struct Failure {
    /// `plugin-error`, `plugin-crashed`, `deadline`, `memory-limit`, `busy`,
    /// `bot-unavailable`, `server-error`, `storage`.
    kind: &'static str,
    message: String,
    /// Trying again later may work.
    retryable: bool,
}

/// Runs one attempt of a job and says how the queue should record it.
async fn run(jobs: &Jobs, job: Job) -> Finish {
    let trigger = match jobs.find_trigger(&job.trigger_id).await {
        Ok(trigger) => trigger,
        Err(error) => {
            return Finish::Retry {
                at: now_ms() + 1000,
                error: format!("cannot read the trigger: {error:#}"),
            };
        }
    };
    let Some(trigger) = trigger else {
        tracing::info!(event = %job.id, trigger = %job.trigger_id, "trigger event cancelled: its trigger was deleted");
        return Finish::Cancelled("the trigger was deleted before the event ran".into());
    };
    let event_id = job.id.clone();
    match jobs.store.trigger_event(&event_id).await {
        Ok(Some(link)) if link.status == "finished" => return Finish::Done,
        Ok(_) => {}
        Err(error) => return storage_retry(jobs, &job, error),
    }
    let installation = match bot(jobs, &trigger) {
        Ok(installation) => installation,
        Err(failure) => return record_failure(jobs, &job, &trigger, None, None, failure, None).await,
    };
    let resolution = resolution(&job, &trigger, &installation);
    let link = match jobs.store.resolve_trigger_event(&resolution).await {
        Ok(link) => link,
        Err(error) => return storage_retry(jobs, &job, error),
    };

    let trigger_info = TriggerInfo {
        trigger_id: trigger.id.clone(),
        event_id: job.id.clone(),
        session: job.session.clone(),
        conversation_id: link.conversation_id.clone(),
        contact_user_id: link.contact_user_id.clone(),
        attempt: job.attempt,
    };
    let request = WebhookRequest {
        method: job.method.clone(),
        path: "/".into(),
        query: job.query.clone(),
        headers: job.headers.clone(),
        body: job.body.clone(),
    };
    let request_id = record_id("req");
    tracing::debug!(event = %job.id, trigger = %trigger.id, attempt = job.attempt, %request_id, "running a trigger event");
    let (result, report) = installation
        .handle_trigger_event(&request_id, trigger_info, request)
        .await;
    match classify(result, &installation) {
        Ok(response) => record_success(jobs, &job, &trigger, &installation, &link, response, report).await,
        Err(failure) => {
            record_failure(
                jobs,
                &job,
                &trigger,
                Some(installation.as_ref()),
                Some(&link),
                failure,
                Some(report),
            )
            .await
        }
    }
}

/// The installation behind a trigger's `botId`, if it can take events.
fn bot(jobs: &Jobs, trigger: &TriggerRecord) -> Result<Arc<Installation>, Failure> {
    match jobs.plugins.registry.by_id_or_name(&trigger.bot_id) {
        Some(installation) if installation.problems.is_empty() => Ok(installation),
        Some(installation) => Err(Failure {
            kind: "bot-unavailable",
            message: format!(
                "bot {} cannot take events: {}",
                trigger.bot_id,
                installation.problems.join("; ")
            ),
            retryable: true,
        }),
        None => Err(Failure {
            kind: "bot-unavailable",
            message: format!(
                "bot {} is not installed: no plugin in the plugins folder has that installation id or name",
                trigger.bot_id
            ),
            retryable: true,
        }),
    }
}

fn resolution(job: &Job, trigger: &TriggerRecord, installation: &Installation) -> EventResolution {
    EventResolution {
        event_id: job.id.clone(),
        trigger_id: trigger.id.clone(),
        installation_id: installation.id().to_string(),
        integration: installation.plugin.definition.name.clone(),
        channel: TRIGGER_CHANNEL.into(),
        session: job.session.clone(),
        session_duration_ms: trigger.session_duration_ms,
        received_at: job.received_at,
        contact: job.contact.clone(),
        received_event: EventRecord {
            id: record_id("evt"),
            installation_id: Some(installation.id().to_string()),
            event_type: "trigger:event:received".into(),
            payload: received_payload(job),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: job.received_at,
        },
    }
}

/// The body as the history shows it: JSON when it is JSON, else text, else base64.
fn body_value(job: &Job) -> (&'static str, Value) {
    if job.body.is_empty() {
        return ("body", Value::Null);
    }
    let json_type = job
        .content_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    if json_type && let Ok(value) = serde_json::from_slice::<Value>(&job.body) {
        return ("body", value);
    }
    match std::str::from_utf8(&job.body) {
        Ok(text) => ("body", Value::String(text.to_string())),
        Err(_) => {
            use base64::Engine as _;
            (
                "bodyBase64",
                Value::String(base64::engine::general_purpose::STANDARD.encode(&job.body)),
            )
        }
    }
}

fn received_payload(job: &Job) -> Value {
    let mut query = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(job.query.as_bytes()) {
        query
            .entry(key.into_owned())
            .or_insert_with(|| Value::String(value.into_owned()));
    }
    let (body_key, body) = body_value(job);
    let mut payload = json!({
        "triggerId": job.trigger_id,
        "eventId": job.id,
        "source": job.source.as_str(),
        "method": job.method,
        "contentType": job.content_type,
        "query": query,
        "session": job.session,
        "contact": job.contact,
        "receivedAt": iso8601(job.received_at),
    });
    payload[body_key] = body;
    payload
}

/// The plugin's answer, or why there is none.
fn classify(result: Answer<WebhookResponse>, installation: &Installation) -> Result<WebhookResponse, Failure> {
    match result {
        Ok(Ok(response)) if response.status >= 500 => Err(Failure {
            kind: "server-error",
            message: format!(
                "plugin {} answered status {}: {}",
                installation.name(),
                response.status,
                truncated_text(&response.body, 512)
            ),
            retryable: true,
        }),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(error)) => Err(Failure {
            kind: "plugin-error",
            retryable: matches!(error.kind, PluginErrorKind::Upstream | PluginErrorKind::Internal),
            message: format!(
                "plugin {} failed ({}): {}",
                installation.name(),
                error.kind.as_str(),
                error.message
            ),
        }),
        Err(failure) => Err(Failure {
            kind: match failure {
                CallError::Deadline(_) => "deadline",
                CallError::MemoryLimit { .. } => "memory-limit",
                CallError::Busy => "busy",
                CallError::Trap(_) => "plugin-crashed",
            },
            message: format!("plugin {}: {failure}", installation.name()),
            retryable: true,
        }),
    }
}

fn truncated_text(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    if bytes.len() > limit {
        format!("{text}... ({} bytes)", bytes.len())
    } else {
        text
    }
}

fn report_fields(report: Option<&CallReport>) -> (Value, Value, Value) {
    match report {
        None => (json!([]), json!([]), Value::Null),
        Some(report) => (
            Value::Array(
                report
                    .logs
                    .iter()
                    .map(|line| json!({ "level": line.level, "message": line.message }))
                    .collect(),
            ),
            serde_json::to_value(&report.created).unwrap_or_default(),
            json!(report.elapsed.as_millis() as u64),
        ),
    }
}

async fn record_success(
    jobs: &Jobs,
    job: &Job,
    trigger: &TriggerRecord,
    installation: &Installation,
    link: &TriggerEventLink,
    response: WebhookResponse,
    report: CallReport,
) -> Finish {
    let (logs, created, elapsed) = report_fields(Some(&report));
    let outcome = EventRecord {
        id: record_id("evt"),
        installation_id: Some(installation.id().to_string()),
        event_type: "trigger:execution:finished".into(),
        payload: json!({
            "triggerId": trigger.id,
            "eventId": job.id,
            "source": job.source.as_str(),
            "attempt": job.attempt,
            "elapsedMs": elapsed,
            "response": {
                "status": response.status,
                "body": truncated_text(&response.body, MAX_RESPONSE_BODY),
            },
            "logs": logs,
            "created": created,
        }),
        conversation_id: Some(link.conversation_id.clone()),
        user_id: link.contact_user_id.clone(),
        message_id: None,
        status: "processed".into(),
        failure_reason: None,
        created_at: now_ms(),
    };
    let event_id = job.id.clone();
    let attempt = job.attempt;
    match jobs
        .store
        .record_trigger_outcome(&event_id, "finished", attempt, &outcome)
        .await
    {
        Ok(_) => {
            tracing::info!(event = %job.id, trigger = %trigger.id, attempt = job.attempt, "trigger event processed");
            Finish::Done
        }
        Err(error) => storage_retry(jobs, job, error),
    }
}

async fn record_failure(
    jobs: &Jobs,
    job: &Job,
    trigger: &TriggerRecord,
    installation: Option<&Installation>,
    link: Option<&TriggerEventLink>,
    failure: Failure,
    report: Option<CallReport>,
) -> Finish {
    let last = !failure.retryable || job.attempt >= job.budget;
    let next_attempt_at = (!last).then(|| now_ms() + jobs.settings.backoff(job.attempt).as_millis() as i64);
    let (logs, created, elapsed) = report_fields(report.as_ref());
    let outcome = EventRecord {
        id: record_id("evt"),
        installation_id: installation.map(|i| i.id().to_string()),
        event_type: "trigger:execution:failed".into(),
        payload: json!({
            "triggerId": trigger.id,
            "eventId": job.id,
            "source": job.source.as_str(),
            "attempt": job.attempt,
            "maxAttempts": job.budget,
            "final": last,
            "nextAttemptAt": next_attempt_at.map(iso8601),
            "error": { "kind": failure.kind, "message": failure.message },
            "elapsedMs": elapsed,
            "logs": logs,
            "created": created,
        }),
        conversation_id: link.map(|l| l.conversation_id.clone()),
        user_id: link.and_then(|l| l.contact_user_id.clone()),
        message_id: None,
        status: "failed".into(),
        failure_reason: Some(failure.message.clone()),
        created_at: now_ms(),
    };
    let event_id = job.id.clone();
    let attempt = job.attempt;
    if let Err(error) = jobs
        .store
        .record_trigger_outcome(&event_id, "failed", attempt, &outcome)
        .await
    {
        return storage_retry(jobs, job, error);
    }
    match next_attempt_at {
        Some(at) => {
            tracing::warn!(event = %job.id, trigger = %trigger.id, attempt = job.attempt, error = %failure.message, "trigger event failed; it will be retried");
            Finish::Retry {
                at,
                error: failure.message,
            }
        }
        None => {
            tracing::error!(event = %job.id, trigger = %trigger.id, attempt = job.attempt, error = %failure.message, "trigger event failed for good; retry it through the API once the cause is fixed");
            Finish::Failed(failure.message)
        }
    }
}

/// The store failed mid-run: nothing was acknowledged as done, so try again later (or
/// give up once the attempts are spent).
fn storage_retry(jobs: &Jobs, job: &Job, error: anyhow::Error) -> Finish {
    let message = format!("the store failed while running the event: {error:#}");
    tracing::error!(event = %job.id, %message);
    if job.attempt >= job.budget {
        Finish::Failed(message)
    } else {
        Finish::Retry {
            at: now_ms() + jobs.settings.backoff(job.attempt).as_millis() as i64,
            error: message,
        }
    }
}
