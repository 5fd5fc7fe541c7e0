//! Verified contents: an object is checked against its BLAKE3 name whenever it is read
//! for a put-back, a fresh read of the same content repairs a damaged object, and a run
//! never starts on a snapshot that names an object the store lacks.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::{Sandbox, Test};

/// Fails at once: no retry hides what the rollback did.
const ONCE: &str = "version: 1\nretry: { max_attempts: 1 }\n";

pub fn store(sb: &Sandbox) -> PathBuf {
    sb.path()
        .parent()
        .expect("the tree has a parent")
        .join("store")
}

/// Where the store keeps the object for `content`.
pub fn object(sb: &Sandbox, content: &[u8]) -> PathBuf {
    object_at(&store(sb), blake3::hash(content).to_hex().as_str())
}

pub fn object_at(store: &Path, hex: &str) -> PathBuf {
    store.join("objects").join(&hex[..2]).join(&hex[2..])
}

/// A shell line that overwrites an object file from inside the run, after the
/// snapshot before it was taken.
fn damage(content: &[u8]) -> String {
    let hex = blake3::hash(content).to_hex();
    format!(
        "printf 'not the original' > \"$BACKSTOP_HOME/objects/{}/{}\"",
        &hex[..2],
        &hex[2..]
    )
}

fn read(sb: &Sandbox, name: &str) -> String {
    fs::read_to_string(sb.path().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

#[test]
fn rollback_never_writes_a_damaged_object_and_names_the_path_it_could_not_restore() {
    let hex = blake3::hash(b"original\n").to_hex();
    let script = format!(
        "{}; echo changed > a.txt; echo also > b.txt; exit 2",
        damage(b"original\n")
    );
    let out = Test::new()
        .policy(ONCE)
        .write("a.txt", "original\n")
        .write("b.txt", "untouched object\n")
        .args(&["run", "--", "sh", "-c", &script])
        .status(125)
        .stderr_contains("rollback incomplete")
        .stderr_contains("a.txt")
        .stderr_contains(&format!("object {hex} in the store is damaged"))
        .run();
    assert_eq!(
        read(&out, "a.txt"),
        "changed\n",
        "the damaged bytes never reach the tree: the path is left as the run left it"
    );
    assert_eq!(
        read(&out, "b.txt"),
        "untouched object\n",
        "the rest is still put back"
    );
}

#[test]
fn undo_refuses_a_damaged_object_and_names_the_path_and_the_object() {
    let out = Test::new()
        .policy(ONCE)
        .write("a.txt", "original\n")
        .args(&["run", "--", "sh", "-c", "echo changed > a.txt"])
        .run();
    fs::write(object(&out, b"original\n"), "not the original").unwrap();
    let undo = out.backstop(&["undo"]);
    assert_eq!(undo.status, 125, "{}", undo.stderr);
    assert!(undo.stderr.contains("a.txt"), "{}", undo.stderr);
    assert!(
        undo.stderr
            .contains("is damaged: its contents no longer match its name"),
        "{}",
        undo.stderr
    );
    assert_eq!(read(&out, "a.txt"), "changed\n");
}

#[test]
fn a_fresh_read_of_the_same_content_repairs_a_damaged_object() {
    let out = Test::new()
        .policy(ONCE)
        .write("a.txt", "original\n")
        .args(&["-q", "snapshot"])
        .run();
    let obj = object(&out, b"original\n");
    fs::write(&obj, "not the original").unwrap();
    // Another file with the same content: reading it finds the name taken by an
    // object that no longer holds it, and replaces that object.
    fs::write(out.path().join("copy.txt"), "original\n").unwrap();
    let ran = out.backstop(&[
        "-q",
        "run",
        "--",
        "sh",
        "-c",
        "echo changed > a.txt; exit 2",
    ]);
    assert_eq!(ran.status, 2, "{}", ran.stderr);
    assert_eq!(
        fs::read(&obj).unwrap(),
        b"original\n",
        "the object is whole again"
    );
    assert_eq!(
        read(&out, "a.txt"),
        "original\n",
        "and the rollback used it"
    );
}

#[test]
fn a_missing_object_the_stat_cache_vouches_for_is_read_again_before_the_run() {
    let out = Test::new().policy(ONCE).write("a.txt", "original\n");
    // Past the racy window, so that the next snapshots trust the stat cache for a.txt.
    std::thread::sleep(Duration::from_millis(2200));
    let snap = out.backstop(&["-q", "snapshot"]);
    assert_eq!(snap.status, 0, "{}", snap.stderr);
    let again = out.backstop(&["snapshot", "--json"]);
    assert!(
        again.stdout.contains("\"read\": 0"),
        "the stat cache vouches for every file now: {}",
        again.stdout
    );
    let obj = object(&out, b"original\n");
    fs::remove_file(&obj).unwrap();
    let marker = out.out_path().join("ran");
    let script = format!("touch '{}'; echo changed > a.txt; exit 2", marker.display());
    let ran = out.backstop(&["-q", "run", "--", "sh", "-c", &script]);
    assert_eq!(ran.status, 2, "{}", ran.stderr);
    assert!(
        marker.exists(),
        "the command ran on a snapshot it can restore"
    );
    assert!(
        obj.exists(),
        "the snapshot re-read a.txt and put its object back"
    );
    assert_eq!(
        read(&out, "a.txt"),
        "original\n",
        "so the rollback could restore it"
    );
}

#[test]
fn a_manifest_swapped_for_another_is_refused_not_followed() {
    let out = Test::new()
        .policy(ONCE)
        .write("a.txt", "original\n")
        .args(&["run", "--", "sh", "-c", "echo changed > a.txt"])
        .run();
    let record = out.record();
    let before = record["snapshot"]["before"].as_str().unwrap().to_string();
    let after = record["snapshot"]["after"].as_str().unwrap().to_string();
    // A well-formed manifest under another's name: its own checksum holds, its name
    // does not. Undo must not take the after-state for the before-state.
    let store = store(&out);
    fs::copy(object_at(&store, &after), object_at(&store, &before)).unwrap();
    let undo = out.backstop(&["undo"]);
    assert_eq!(undo.status, 125, "{}", undo.stderr);
    assert!(
        undo.stderr
            .contains(&format!("object {before} in the store is damaged")),
        "{}",
        undo.stderr
    );
    assert_eq!(read(&out, "a.txt"), "changed\n");
}

#[test]
fn a_run_whose_missing_object_cannot_be_put_back_does_not_start() {
    let out = Test::new().policy(ONCE).write("a.txt", "original\n");
    std::thread::sleep(Duration::from_millis(2200));
    let snap = out.backstop(&["-q", "snapshot"]);
    assert_eq!(snap.status, 0, "{}", snap.stderr);
    // The object is gone and its fan-out directory is now a file: the store cannot
    // take the object back, so the snapshot before the run cannot be made whole.
    let obj = object(&out, b"original\n");
    let fan = obj.parent().unwrap().to_path_buf();
    fs::remove_dir_all(&fan).unwrap();
    fs::write(&fan, "in the way").unwrap();
    let marker = out.out_path().join("ran");
    let script = format!("touch '{}'; echo changed > a.txt", marker.display());
    let ran = out.backstop(&["run", "--", "sh", "-c", &script]);
    assert_eq!(ran.status, 125, "{}", ran.stderr);
    assert!(!marker.exists(), "the command did not run");
    assert!(
        ran.stderr.contains(&fan.display().to_string()),
        "the message names the store's directory: {}",
        ran.stderr
    );
    assert_eq!(read(&out, "a.txt"), "original\n");
}

#[test]
fn an_object_swapped_for_a_symlink_to_an_endless_file_is_refused_at_once() {
    let out = Test::new()
        .policy(ONCE)
        .write("a.txt", "original\n")
        .args(&["run", "--", "sh", "-c", "echo changed > a.txt"])
        .run();
    let obj = object(&out, b"original\n");
    fs::remove_file(&obj).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &obj).unwrap();
    let undo = out.backstop(&["undo"]);
    assert_eq!(undo.status, 125, "{}", undo.stderr);
    assert!(undo.stderr.contains("is damaged"), "{}", undo.stderr);
    assert_eq!(read(&out, "a.txt"), "changed\n");
    let left: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".backstop-"))
        .collect();
    assert!(
        left.is_empty(),
        "no staging file is left in the tree: {left:?}"
    );
}
