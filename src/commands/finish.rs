//! What follows a run once its record is final (rollback included): its figures go
//! where the policy's `metrics:` says. Nothing here changes the run's exit code or its
//! record; every failure is one warning.

use std::path::Path;

use crate::events::{Event, EventSink};
use crate::policy::Policy;
use crate::reporter::Reporter;
use crate::stats::Facts;
use crate::store::RunRecords;

pub fn after_run(
    store: &Path,
    policy: &Policy,
    tree: &RunRecords,
    id: &str,
    reporter: &mut Reporter,
) {
    let metrics = &policy.metrics;
    if metrics.textfile.is_none() && metrics.pushgateway.is_none() {
        return;
    }
    // Read back: a rollback writes its result into the record through the journal.
    let record = match tree.find(id) {
        Ok(r) => r,
        Err(e) => {
            reporter.event(&Event::Warning(format!(
                "metrics not written: cannot read the record of run {id}: {e:#}"
            )));
            return;
        }
    };
    let facts = Facts::of(&record);
    for warning in crate::stats::publish::after_run(store, metrics, &facts) {
        reporter.event(&Event::Warning(warning));
    }
}
