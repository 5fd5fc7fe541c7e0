//! Layer 3: snapshots of a tree, the change set of a run, and putting paths back.

pub mod apply;
pub mod checkout;
pub mod diff;
pub mod git;
pub mod git_objects;
pub mod journal;
pub mod lock;
pub mod manifest;
pub mod objects;
pub mod region;
pub mod rules;
pub mod scope;
pub mod snapshots;
pub mod take;
pub mod walk;
