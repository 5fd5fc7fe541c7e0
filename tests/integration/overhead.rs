//! What the wrapper writes for a command that needs no help (issue 10, part 4): a run
//! over an unchanged tree writes the store twice, its record as it starts and once
//! whole at its end, and nothing it would write the same again. The writes are counted
//! with the crash points every store write passes (`BACKSTOP_CRASH_AT=written:N`, see
//! `src/crash.rs`): a point past the last one is never reached.

use std::time::Duration;

use super::helpers::Test;

/// Past the coarsest tick of a filesystem's clock, so the second run's note of what the
/// store holds is dated after every directory time it notes.
const TICK: Duration = Duration::from_millis(50);

#[test]
fn a_run_over_an_unchanged_tree_writes_the_store_twice_its_record_as_it_starts_and_ends() {
    let t = Test::new().args(&["run", "--", "true"]).run();
    std::thread::sleep(TICK);
    // The second run notes the objects as present with a clock later than their
    // directories' times; from then on the note stands as it is.
    assert_eq!(t.backstop(&["run", "--", "true"]).status, 0);

    let third = t.backstop_env(
        &[("BACKSTOP_CRASH_AT", "written:3")],
        &["run", "--", "true"],
    );
    assert_eq!(
        third.status, 0,
        "a third store write was reached (killed there, 1009):\n{}",
        third.stderr
    );
    // Nothing was lost by writing the record once at the end: it is whole.
    let record = t.record();
    assert_eq!(record["status"], "finished", "{record:#}");
    assert_eq!(record["outcome"]["outcome"], "succeeded", "{record:#}");
    assert_eq!(record["attempts"].as_array().map(Vec::len), Some(1));
    assert!(record["snapshot"]["after"].is_string(), "{record:#}");

    // And the count is two, not fewer: the second write is reached (and killed there).
    let fourth = t.backstop_env(
        &[("BACKSTOP_CRASH_AT", "written:2")],
        &["run", "--", "true"],
    );
    assert_eq!(fourth.status, 1009, "killed at its second write (SIGKILL)");
}

#[test]
fn a_step_s_end_is_in_the_record_before_the_next_step_runs() {
    // Step two copies the run's record as it stands while it runs.
    let t = Test::new()
        .policy(
            "version: 1\nsteps:\n  - { name: one, run: [\"true\"] }\n  - { name: two, run: [sh, -c, 'cp \"$BACKSTOP_HOME\"/trees/*/runs/*.json \"$OUT/record.json\"'] }\n",
        )
        .args(&["run"])
        .run();
    let seen: serde_json::Value =
        serde_json::from_str(&t.read("record.json")).expect("step two copied the record");
    assert_eq!(seen["status"], "running", "{seen:#}");
    assert_eq!(seen["steps"][0]["name"], "one", "{seen:#}");
    assert_eq!(
        seen["steps"][0]["outcome"]["outcome"], "succeeded",
        "step one's end is written before step two starts: {seen:#}"
    );
    // The last step's end is written by the run's end.
    let record = t.record();
    assert_eq!(record["status"], "finished", "{record:#}");
    assert_eq!(record["steps"][1]["outcome"]["outcome"], "succeeded");
}
