//! Where a finished run goes besides the store: an OpenTelemetry collector (one trace
//! per run over OTLP/HTTP) and GitHub Actions (the step summary and outputs). Each
//! reads the run's record once it is final, after any rollback; a failure to export
//! is one warning, never a changed exit code or outcome.

pub mod attributes;
pub mod end;
pub mod github;
pub mod names;
pub mod otlp;
pub mod send;
pub mod trace_context;

pub use end::{Finished, after_run, wanted};
pub use names::Kind;
