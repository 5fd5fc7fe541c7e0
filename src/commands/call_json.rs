//! The document `backstop call --json` prints: one typed struct, its JSON Schema
//! committed as `docs/call-json.schema.json` (checked by a test; `BACKSTOP_BLESS=1`
//! rewrites it).

use schemars::JsonSchema;
use serde::Serialize;

use crate::events::{Outcome, RunSummary};
use crate::policy::Policy;
use crate::record::ChaosRef;

/// The answer of `backstop call --json`, and how it was reached. Keys are written in
/// alphabetical order; new keys may be added, none removed or changed in meaning.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "backstop call --json")]
pub struct CallJson {
    /// Attempts made in all, across retries and fallback links.
    pub attempts: u32,
    /// Under `--chaos`: the fault file and the seed of the injected faults; null
    /// otherwise.
    pub chaos: Option<ChaosRef>,
    /// What the calls cost in US dollars, by the models' `price`; null when no model
    /// called has a price.
    pub cost_usd: Option<f64>,
    /// The exit code backstop ends with (see the README's table).
    pub exit_code: u8,
    /// Input tokens of every attempt, as the providers counted them.
    pub input_tokens: u64,
    /// The policy's name (under `models`) of the model that answered; null when none
    /// did.
    pub model: Option<String>,
    /// How the run ended: `succeeded` (a model answered), `degraded` (a `default` link
    /// answered), `escalated`, `failed`, `interrupted`, ...
    pub outcome: Outcome,
    /// Output tokens of every attempt, as the providers counted them.
    pub output_tokens: u64,
    /// The provider's id of the model that answered (`model` under the policy's
    /// model): the alias alone does not say which version answered.
    pub provider_model: Option<String>,
    /// Why the chain stopped where it did, when the first attempt did not succeed.
    pub reason: Option<String>,
    /// The run's id, for `backstop show` and `backstop undo`.
    pub run_id: String,
    /// The answer; null when no model answered.
    pub text: Option<String>,
}

impl CallJson {
    pub fn new(
        id: &str,
        summary: &RunSummary,
        policy: &Policy,
        chaos: Option<ChaosRef>,
    ) -> CallJson {
        CallJson {
            attempts: summary.attempts,
            chaos,
            cost_usd: summary.cost_usd,
            exit_code: summary.exit_code,
            input_tokens: summary.input_tokens,
            model: summary.model.clone(),
            outcome: summary.outcome,
            output_tokens: summary.output_tokens,
            provider_model: summary
                .model
                .as_ref()
                .and_then(|m| policy.models.get(m))
                .map(|m| m.model.clone()),
            reason: summary.reason.clone(),
            run_id: id.to_string(),
            text: summary.answer.clone(),
        }
    }
}

/// The JSON Schema of the document, pretty-printed, ending in a newline. Every key
/// is always written (null when it has no value), so every key is required.
#[cfg(test)]
fn schema_json() -> String {
    let mut schema = schemars::schema_for!(CallJson);
    if let Some(object) = schema.schema.object.as_mut() {
        object.required = object.properties.keys().cloned().collect();
    }
    let mut out = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/call-json.schema.json");
        crate::policy::schema::assert_committed(&path, &super::schema_json());
    }
}
