//! SIGHUP: reads the rule file and the model file again and swaps both in, or neither.

use std::sync::Arc;

use antifraud_domain::{ModelIdentity, RuleSet};

use crate::metrics::Metrics;
use crate::model::ReloadableModel;
use crate::rules::ReloadableRules;

/// What a SIGHUP reloads, and where it counts the outcome.
pub(crate) struct Reloadable {
    pub(crate) model: Arc<ReloadableModel>,
    pub(crate) rules: Arc<ReloadableRules>,
    pub(crate) metrics: Arc<Metrics>,
}

/// What one reload swapped in.
#[derive(Debug)]
enum Reloaded {
    /// Neither the rules nor the model are files.
    Nothing,
    /// The new rules' version and the new model, those that are files.
    Swapped {
        rules: Option<String>,
        model: Option<ModelIdentity>,
    },
}

/// Reloads on every SIGHUP until the task is aborted.
pub(crate) async fn reload_on_hangup(reloadable: Reloadable) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP: the rules and the model will not reload");
        return;
    };
    let reloadable = Arc::new(reloadable);
    while hangups.recv().await.is_some() {
        let r = Arc::clone(&reloadable);
        // Reading and compiling a large model or rule file must not hold an async worker.
        let outcome = tokio::task::spawn_blocking(move || reload(&r)).await;
        let outcome = outcome.unwrap_or_else(|panic| Err(anyhow::anyhow!("panicked: {panic}")));
        match outcome {
            Ok(Reloaded::Nothing) => {
                tracing::info!(
                    "SIGHUP: neither the rules nor the model are files, nothing to reload"
                );
            }
            Ok(Reloaded::Swapped { rules, model }) => {
                reloadable.metrics.reloaded(true);
                tracing::info!(
                    rules.version = rules.as_deref(),
                    model.name = model.as_ref().map(|m| m.name.as_str()),
                    model.version = model.as_ref().map(|m| m.version.as_str()),
                    "reloaded"
                );
            }
            Err(error) => {
                reloadable.metrics.reloaded(false);
                tracing::error!(
                    error = format!("{error:#}"),
                    "reload refused; the previous rules and model keep serving"
                );
            }
        }
    }
}

/// Reads and checks both files before swapping either: a deployment that changes the rules and
/// the model together (rules tuned to a new model's scores) never serves half of itself.
fn reload(reloadable: &Reloadable) -> anyhow::Result<Reloaded> {
    let Reloadable {
        model,
        rules,
        metrics,
    } = reloadable;
    let new_rules = rules
        .read_again()
        .transpose()
        .map_err(|e| anyhow::anyhow!("--rules (ANTIFRAUD_RULES): {e}"))?;
    let new_model = model.read_again().transpose()?;
    if new_rules.is_none() && new_model.is_none() {
        return Ok(Reloaded::Nothing);
    }
    let rules_version = new_rules.map(|new| {
        let version = new.version();
        // The new rules' series first, then the swap: every evaluation by the new set is
        // counted, and one by the old set still in flight counts only rules both share.
        metrics.rules_in_force(&new);
        rules.install(Arc::new(new));
        version
    });
    let model_identity = new_model.map(|new| model.install(new));
    Ok(Reloaded::Swapped {
        rules: rules_version,
        model: model_identity,
    })
}
