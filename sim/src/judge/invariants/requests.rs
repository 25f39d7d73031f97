//! What every request must get: an end (`terminates`), no
//! `internal_error`, and nothing of another tenant (`tenant_isolation`).

use cusim::model::ErrorCode;
use serde_json::json;

use super::{Checker, Invariant, Source};
use crate::judge::observation::{End, RequestOutcome};

impl Checker<'_> {
    pub(super) fn terminates(&mut self) {
        let (message, sources) = match &self.obs.end {
            End::Quiescent => return,
            End::StepCap { steps } => {
                (format!("the run had not ended after {steps} steps (livelock)"), vec![])
            }
            End::Stalled { waiting } => (
                format!("requests wait for transactions nobody will end: {waiting:?} (request, holder)"),
                waiting.iter().map(|(r, _)| Source::Request(*r)).collect(),
            ),
            End::OpenTransaction { requests } => (
                format!("requests {requests:?} ended with their transactions open"),
                requests.iter().map(|r| Source::Request(*r)).collect(),
            ),
        };
        let unfinished: Vec<String> = self
            .obs
            .outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, RequestOutcome::Unfinished { .. }))
            .map(|(i, o)| format!("request {i}: {o:?}"))
            .collect();
        self.violate(
            Invariant::Terminates,
            &sources,
            message,
            json!({ "end": self.obs.end, "unfinished": unfinished }),
        );
    }

    pub(super) fn no_internal_error(&mut self) {
        let mut found = Vec::new();
        // Every attempt's answer counts: a client that retried still saw it.
        for (i, outcome) in self.obs.outcomes.iter().enumerate() {
            for attempt in self.obs.retried[i].iter().chain(std::iter::once(outcome)) {
                if let RequestOutcome::Responded(result) = attempt {
                    let Err(error) = result.as_ref() else { continue };
                    if error.code == ErrorCode::InternalError {
                        found.push((Source::Request(i), error.clone()));
                    }
                }
            }
        }
        for (i, settle) in self.obs.settles.iter().enumerate() {
            if let Err(error) = &settle.result {
                if error.code == ErrorCode::InternalError {
                    found.push((Source::Settle(i), error.clone()));
                }
            }
        }
        for (source, error) in found {
            self.violate(
                Invariant::NoInternalError,
                &[source],
                format!("{source} failed with internal_error: {}", error.message),
                json!({ "error": error }),
            );
        }
    }

    pub(super) fn tenant_isolation(&mut self) {
        let breaches = self.obs.state.breaches.clone();
        for breach in breaches {
            let sources = if breach.request < self.scenario.requests.len() {
                vec![Source::Request(breach.request)]
            } else {
                vec![]
            };
            self.violate(
                Invariant::TenantIsolation,
                &sources,
                format!(
                    "request {} in {} touched a row of {} at {}",
                    breach.request, breach.request_scope, breach.touched_scope, breach.point
                ),
                json!({ "breach": breach }),
            );
        }
        let mut found = Vec::new();
        for (source, scope, _, response) in self.responses() {
            let shown = response.customer().customer.scope();
            if shown != scope {
                let evidence =
                    json!({ "asked_in": scope.to_string(), "shown": response.customer().customer });
                found.push((
                    source,
                    format!("{source} in {scope} was shown a customer of {shown}"),
                    evidence,
                ));
            }
        }
        for (source, message, evidence) in found {
            self.violate(Invariant::TenantIsolation, &[source], message, evidence);
        }
    }
}
