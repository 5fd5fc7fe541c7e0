//! What follows a run once its record is final (rollback included): its alert rules
//! are evaluated, then its record goes where the policy's `metrics:` says (the store's
//! tally for a textfile and a Pushgateway, an OTLP trace, GitHub Actions). Nothing
//! here changes the run's exit code or its record; every failure is one warning.

use std::path::Path;

use crate::export::Finished;
use crate::reporter::Reporter;
use crate::stats::Facts;

pub fn after_run(store: &Path, done: &Finished, reporter: &mut Reporter) {
    crate::stats::alerts::after_run(store, done.policy, reporter);
    let metrics = &done.policy.metrics;
    let tally = metrics.textfile.is_some() || metrics.pushgateway.is_some();
    if !tally && !crate::export::wanted(done.policy) {
        return;
    }
    // Read back once: a rollback writes its result into the record through the journal.
    let record = match done.records.read(done.id) {
        Ok(r) => r,
        Err(e) => {
            let why = format!(
                "cannot read the record of run {} to send it: {e:#}",
                done.id
            );
            crate::export::end::warn(reporter, &why);
            return;
        }
    };
    // Injected failures are not the service's: a chaos run stays out of the counters.
    if tally && record.chaos.is_none() {
        for warning in crate::stats::publish::after_run(store, metrics, &Facts::of(&record)) {
            crate::export::end::warn(reporter, &warning);
        }
    }
    crate::export::after_run(&record, done, reporter);
}
