//! Integration tests: each drives the real `backstop` binary (see `helpers`).
//!
//! One test binary, one module per area, in the style of casey/just's `tests/`.
//! Linux only: some tests read `/proc` and use `wait4`.

mod helpers;

mod adversarial;
mod adversarial_git;
mod adversarial_late;
mod adversarial_limits;
mod adversarial_runs;
mod agents;
mod alerts;
mod breaker;
mod broken_pipe;
mod call;
mod call_everyday;
mod call_limits;
mod call_messages;
mod change_feed;
mod chaos_inject;
mod chaos_serve;
mod ci;
mod cli;
mod crash_campaign;
mod descendants;
mod environment;
mod everyday_agent;
mod everyday_policy;
mod exit_codes;
mod export_github;
mod export_otlp;
mod fallback;
mod fsck;
mod gc;
mod git_checkout;
mod hangs;
mod history;
mod job_control;
mod late_edits;
mod load;
mod locks;
mod names;
mod no_snapshot;
mod output;
mod overhead;
mod policy_command;
mod policy_errors;
mod policy_limits;
mod prometheus;
mod put_back;
mod quiet_call;
mod records;
mod redis_server;
mod region;
mod reporting;
mod retry;
mod signals;
mod simulate;
mod stats;
mod timeout;
mod unchanged;
mod undo;
mod verify;
