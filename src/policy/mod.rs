//! The policy file: parsing, validation, defaults, schema and schedule.

pub mod explain;
pub mod guard;
pub mod limits;
pub mod load;
pub(crate) mod locate;
pub mod model;
mod ops;
mod raw;
pub mod reports;
pub mod request;
mod resolve;
pub mod schema;
pub mod values;

pub use guard::{Backend, Breaker, Guarding, RetryBudget, StateConfig, Trip};
pub use load::{PolicyChoice, builtin, choose, load_file, load_str};
pub use model::*;
/// The schema of a duration as a policy writes it, for other files' schemas.
pub(crate) use raw::schema::Duration as DurationSchema;
pub use resolve::MAX_ATTEMPTS_CAP;

/// Whether backstop runs under CI: `CI` set to anything but empty, `false` or `0`, as
/// GitHub Actions, GitLab CI, CircleCI and others set it.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| {
        let v = v.to_string_lossy().trim().to_ascii_lowercase();
        !(v.is_empty() || v == "false" || v == "0")
    })
}

impl Policy {
    /// Whether a run takes a snapshot: never with `rollback.snapshot: false`; under
    /// CI only when the policy sets `rollback:` itself. A CI checkout is thrown away
    /// after the job, so a rollback there only destroys the evidence (a test report,
    /// a log) of a failure.
    pub fn snapshots(&self, ci: bool) -> bool {
        self.rollback.snapshot && (!ci || self.rollback.explicit)
    }

    /// Why a run under this policy takes no snapshot, if it takes none.
    pub fn no_snapshot(&self, ci: bool) -> Option<NoSnapshot> {
        if !self.rollback.snapshot {
            Some(NoSnapshot::Policy)
        } else if !self.snapshots(ci) {
            Some(NoSnapshot::Ci)
        } else {
            None
        }
    }
}
