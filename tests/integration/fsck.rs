//! `backstop fsck [--repair]`: every object re-hashed, every manifest, record and
//! journal read; damage reported with the runs it affects; `--repair` fixes what a
//! fresh read of the trees can and names the rest.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Output, Test, eventually};
use crate::verify::{object, object_at, store};

const ONCE: &str = "version: 1\nretry: { max_attempts: 1 }\n";

/// A run that changed a.txt (so undo needs "original\n") and left b.txt alone.
fn one_run() -> Output {
    Test::new()
        .policy(ONCE)
        .write("a.txt", "original\n")
        .write("b.txt", "unchanged\n")
        .args(&["-q", "run", "--", "sh", "-c", "echo changed > a.txt"])
        .run()
}

fn run_id(out: &Output) -> String {
    out.runs()[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_sound_store_passes() {
    let out = one_run();
    let fsck = out.backstop(&["fsck"]);
    assert_eq!(fsck.status, 0, "{}{}", fsck.stdout, fsck.stderr);
    assert!(
        fsck.stdout.contains("the store is sound"),
        "{}",
        fsck.stdout
    );
    let json = out.backstop(&["fsck", "--json"]);
    let doc: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["sound"], true, "{doc:#}");
    assert_eq!(doc["checked"]["records"], 1, "{doc:#}");
    assert_eq!(doc["checked"]["manifests"], 2, "before and after: {doc:#}");
}

#[test]
fn damage_is_reported_with_the_runs_and_files_it_affects() {
    let out = one_run();
    let id = run_id(&out);
    let obj = object(&out, b"original\n");
    fs::write(&obj, "not the original").unwrap();
    let hex = blake3::hash(b"original\n").to_hex().to_string();
    let fsck = out.backstop(&["fsck"]);
    assert_eq!(fsck.status, 4, "{}{}", fsck.stdout, fsck.stderr);
    assert!(
        fsck.stdout.contains(&format!("damaged object {hex}")),
        "{}",
        fsck.stdout
    );
    assert!(
        fsck.stdout.contains(&format!(
            "run {id} can no longer be undone: 1 file(s)' contents before the run are damaged: a.txt"
        )),
        "{}",
        fsck.stdout
    );
    // Looking changes nothing.
    assert_eq!(fs::read(&obj).unwrap(), b"not the original");
}

#[test]
fn repair_recreates_what_a_fresh_read_can_and_names_what_it_cannot() {
    let out = one_run();
    let id = run_id(&out);
    let damaged = object(&out, b"original\n");
    let missing = object(&out, b"unchanged\n");
    fs::write(&damaged, "not the original").unwrap();
    fs::remove_file(&missing).unwrap();
    let leftover = store(&out).join("objects/tmp/obj-left-by-kill-9");
    fs::write(&leftover, "half an object").unwrap();

    let fsck = out.backstop(&["fsck", "--repair"]);
    assert_eq!(
        fsck.status, 4,
        "a.txt's old content is gone: {}",
        fsck.stdout
    );
    assert_eq!(
        fs::read(&missing).unwrap(),
        b"unchanged\n",
        "b.txt still holds it: {}",
        fsck.stdout
    );
    assert!(!damaged.exists(), "the damaged object is out of the way");
    let quarantined = fs::read_dir(store(&out).join("quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 1, "and kept aside");
    assert!(!leftover.exists(), "the leftover staging file is gone");
    assert!(
        fsck.stdout.contains(&format!(
            "run {id} can no longer be undone: 1 file(s)' contents before the run are missing: a.txt"
        )),
        "{}",
        fsck.stdout
    );

    // Once a tree file holds that content again, a repair re-creates it from there.
    fs::write(out.path().join("a.txt"), "original\n").unwrap();
    let again = out.backstop(&["fsck", "--repair"]);
    assert_eq!(again.status, 0, "{}", again.stdout);
    assert_eq!(fs::read(&damaged).unwrap(), b"original\n");
    let check = out.backstop(&["fsck"]);
    assert_eq!(check.status, 0, "{}", check.stdout);
}

#[test]
fn unreadable_records_and_journals_are_named() {
    let out = one_run();
    let id = run_id(&out);
    let trees = store(&out).join("trees");
    let tree = fs::read_dir(&trees)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let record = tree.join("runs").join(format!("{id}.json"));
    fs::write(&record, "{ torn").unwrap();
    fs::write(tree.join("journal.json"), "not json").unwrap();
    let fsck = out.backstop(&["fsck"]);
    assert_eq!(fsck.status, 4, "{}", fsck.stdout);
    assert!(
        fsck.stdout
            .contains(&format!("damaged record {}", record.display())),
        "{}",
        fsck.stdout
    );
    assert!(
        fsck.stdout.contains(&format!(
            "damaged journal {}",
            tree.join("journal.json").display()
        )),
        "{}",
        fsck.stdout
    );
}

#[test]
fn a_swapped_manifest_is_damage_too() {
    let out = one_run();
    let record = out.record();
    let before = record["snapshot"]["before"].as_str().unwrap().to_string();
    let after = record["snapshot"]["after"].as_str().unwrap().to_string();
    let store = store(&out);
    fs::copy(object_at(&store, &after), object_at(&store, &before)).unwrap();
    let fsck = out.backstop(&["fsck"]);
    assert_eq!(fsck.status, 4, "{}", fsck.stdout);
    assert!(
        fsck.stdout.contains(&format!(
            "can no longer be undone: its snapshot before the run (manifest {before}) cannot be read"
        )),
        "{}",
        fsck.stdout
    );
}

#[test]
fn repair_waits_for_a_snapshot_in_progress_and_a_plain_check_does_not() {
    let out = one_run();
    let lock = store(&out).join("objects.lock");
    let marker = out.out_path().join("holding");
    // What a snapshot in progress holds: the store's object lock, shared.
    let mut holder = std::process::Command::new("flock")
        .arg("-s")
        .arg(&lock)
        .args([
            "sh",
            "-c",
            &format!("touch '{}'; sleep 3", marker.display()),
        ])
        .spawn()
        .expect("flock(1) runs");
    assert!(
        eventually(Duration::from_secs(10), || marker.exists()),
        "the holder took the lock"
    );
    let look = out.backstop(&["fsck"]);
    assert_eq!(look.status, 0, "{}", look.stdout);
    assert!(
        holder.try_wait().unwrap().is_none(),
        "checking did not wait for the snapshot"
    );
    let repair = out.backstop(&["fsck", "--repair"]);
    assert_eq!(repair.status, 0, "{}", repair.stdout);
    assert!(
        holder.try_wait().unwrap().is_some(),
        "repairing waited until the snapshot let go of the store"
    );
    let _ = holder.wait();
}
