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
pub mod watch;

/// The cores this process may run on (its CPU affinity mask), at least one.
/// `std::thread::available_parallelism` also reads the cgroup's CPU quota, parsing
/// `/proc/self/mountinfo` to find it: a tenth of a millisecond that a run of a small
/// tree would spend before its first file. Snapshots use two to four threads at most,
/// which no quota worth honouring is below.
pub fn cores() -> usize {
    rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count().max(1) as usize)
}

/// The filesystem type under `path` (`statfs`'s magic number, as in linux/magic.h), or
/// `None` when it cannot be read.
pub fn fs_magic(path: &std::path::Path) -> Option<u64> {
    // The field is a signed word whose width varies by platform; magics are 32-bit.
    rustix::fs::statfs(path)
        .ok()
        .map(|fs| fs.f_type as u64 & 0xffff_ffff)
}
