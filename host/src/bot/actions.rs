//! `call-action` for the bot: `{type: "<integration>:<action>", input}` runs the action in
//! a fresh sandbox after checking the input, and checks the plugin's output against the
//! action's own output schema before anyone sees it.

use serde_json::Value;

use super::error::describe;
use super::{BotError, find_installation, list_or_none, ready};
use crate::json_depth;
use crate::plugins::PluginHost;

/// What an action answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutput {
    /// Valid against the action's output schema.
    pub output: Value,
    /// What the call cost (Botpress `metadata.setCost`); 0 when the plugin set none.
    pub cost: f64,
    /// The installation that ran it.
    pub installation: String,
}

/// Runs action `action_type` (`<installation or integration>:<action>`) with `input`.
pub async fn call_action(
    plugins: &PluginHost,
    action_type: &str,
    input: Value,
    request_id: &str,
) -> Result<ActionOutput, BotError> {
    let Some((target, action)) = action_type.split_once(':') else {
        return Err(BotError::invalid(format!(
            "action type {action_type:?} must be <integration>:<action>, for example chat:sendMessage"
        )));
    };
    let snapshot = plugins.registry.snapshot();
    let installation = find_installation(&snapshot, target)?;
    let definition = &installation.plugin.definition;
    let Some(declared) = definition.actions.get(action) else {
        return Err(BotError::not_found(format!(
            "integration {} has no action {action:?} (declared: {})",
            definition.name,
            list_or_none(definition.actions.keys().map(String::as_str))
        )));
    };
    declared.input.check(&input).map_err(|problems| {
        BotError::invalid_data(format!(
            "the input of action {action_type} does not match its schema: {problems}"
        ))
    })?;
    ready(&installation)?;

    let what = format!("run action {action}");
    let (answer, report) = installation.call_action(request_id, action, &input.to_string()).await;
    let result = BotError::from_answer(&installation, &what, answer, &report)?;

    let broken = |problem: String| {
        BotError::plugin_failed(format!(
            "{} answered action {action} with {problem}; the plugin must be fixed",
            describe(&installation)
        ))
    };
    json_depth::check(result.output.as_bytes(), json_depth::RECORDED_MAX_DEPTH, "its output").map_err(broken)?;
    let output: Value =
        serde_json::from_str(&result.output).map_err(|e| broken(format!("output that is not valid JSON ({e})")))?;
    declared
        .output
        .check(&output)
        .map_err(|problems| broken(format!("output that breaks its output schema: {problems}")))?;
    let cost = match result.cost {
        None => 0.0,
        Some(cost) if cost.is_finite() && cost >= 0.0 => cost,
        Some(cost) => return Err(broken(format!("a cost of {cost}, which is not a finite number >= 0"))),
    };
    tracing::debug!(installation = %installation.name(), %request_id, action, cost, "action ran");
    Ok(ActionOutput {
        output,
        cost,
        installation: installation.name().to_string(),
    })
}
