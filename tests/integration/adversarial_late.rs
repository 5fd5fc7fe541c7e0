//! Attacks on the rule that a rollback keeps what changed after the command's
//! processes had all ended: no user edit is lost, everything the command did is
//! taken back, and the record, `show`, `undo` and `redo` agree afterwards.

use crate::helpers::Test;
use crate::job_control::{PTY, drive};
use std::io::Write;

/// `at_prompts` with each answer typed as a line (`y` or `n`).
fn at_prompts(test: &Test, prompts: &[(&str, &str)]) -> String {
    let typed: Vec<(&str, String)> = prompts
        .iter()
        .map(|(a, k)| (*a, format!("{k}\\n")))
        .collect();
    let typed: Vec<(&str, &str)> = typed.iter().map(|(a, k)| (*a, k.as_str())).collect();
    crate::job_control::at_prompts(test, &typed)
}

fn read(test: &Test, name: &str) -> Option<String> {
    std::fs::read_to_string(test.path().join(name)).ok()
}

/// The tree's `name` holds `want` (`None`: it is not there); `said` is what the run
/// printed, for the failure message.
#[track_caller]
fn holds(test: &Test, name: &str, want: Option<&str>, said: &str) {
    assert_eq!(read(test, name).as_deref(), want, "{name}: {said}");
}

const MINE: &str = r#"
with open("mine.txt", "w") as f:
    f.write("mine\n")
with open("notes.txt", "a") as f:
    f.write("typed at the prompt\n")
time.sleep(0.2)  # a user's pause before answering: the kernel's clock ticks on
"#;

/// A rollback that kept the user's edits, then `redo`, then `undo`: the undo takes
/// back the run's own changes and never the paths the rollback had kept (a file the
/// user made at the prompt is not the run's to delete).
#[test]
fn undo_after_redo_of_a_rollback_that_kept_paths_leaves_the_kept_paths_alone() {
    let test = Test::new().write("notes.txt", "before\n").policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { to: start }\nsteps:\n  \
             - { name: one, run: \"echo one > one.txt\" }\n  \
             - { name: two, run: \"echo two > two.txt\", approve: true }\n",
    );
    let said = at_prompts(&test, &[(MINE, "n")]);
    assert!(said.contains("exit 1\n"), "{said}");
    holds(&test, "one.txt", None, &said);
    holds(&test, "mine.txt", Some("mine\n"), &said);

    let redo = test.backstop(&["redo"]);
    assert_eq!(redo.status, 0, "{}", redo.stderr);
    assert_eq!(read(&test, "one.txt").as_deref(), Some("one\n"));
    // The record still says which paths were kept, and show still marks them.
    let snap = &test.record()["snapshot"];
    assert_eq!(snap["late"].as_array().map_or(0, Vec::len), 2, "{snap:#}");
    let show = test.backstop(&["show"]);
    let mine = show.stdout.lines().find(|l| l.contains("mine.txt"));
    assert!(
        mine.is_some_and(|l| l.ends_with("(not the run's: changed after the command had ended)")),
        "{}",
        show.stdout
    );

    let undo = test.backstop(&["undo"]);
    assert_eq!(undo.status, 0, "{}", undo.stderr);
    holds(&test, "one.txt", None, &undo.stderr);
    assert_eq!(
        read(&test, "mine.txt").as_deref(),
        Some("mine\n"),
        "{}",
        undo.stderr
    );
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("before\ntyped at the prompt\n"),
        "{}",
        undo.stderr
    );
    let snap = &test.record()["snapshot"];
    assert_eq!(snap["state"], "undone", "{snap:#}");

    // And redo once more puts back only the run's own change.
    let redo = test.backstop(&["redo"]);
    assert_eq!(redo.status, 0, "{}", redo.stderr);
    assert_eq!(read(&test, "one.txt").as_deref(), Some("one\n"));
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"));
}

const THREE_STEPS: &str = "steps:\n  \
     - { name: one, run: \"echo one > one.txt && echo one >> notes.txt\" }\n  \
     - { name: two, run: \"echo two > two.txt\", approve: true }\n  \
     - { name: three, run: \"echo three > three.txt; exit 4\", approve: true }\n";

const EDIT_TWO: &str = r#"
with open("mine2.txt", "w") as f:
    f.write("at two\n")
with open("notes.txt", "a") as f:
    f.write("typed at two\n")
time.sleep(0.2)  # a user's pause before answering: the kernel's clock ticks on
"#;

const EDIT_THREE: &str = r#"
with open("mine3.txt", "w") as f:
    f.write("at three\n")
time.sleep(0.2)
"#;

/// Edits typed at two prompts, each step approved, the last step failing: going back
/// to the start takes back the three steps' work, and neither prompt's edits (made
/// while no process of the command was running, and not touched after).
#[test]
fn edits_at_the_prompts_of_approved_steps_survive_a_rollback_to_the_start() {
    let test = Test::new().write("notes.txt", "before\n").policy(&format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: start }}\n{THREE_STEPS}"
    ));
    let said = at_prompts(&test, &[(EDIT_TWO, "y"), (EDIT_THREE, "y")]);
    assert!(said.contains("exit 4\n"), "{said}");
    for name in ["one.txt", "two.txt", "three.txt"] {
        assert_eq!(read(&test, name), None, "{name}: {said}");
    }
    holds(&test, "mine2.txt", Some("at two\n"), &said);
    holds(&test, "mine3.txt", Some("at three\n"), &said);
    // notes.txt holds step one's line and the user's: the user's last word stands.
    holds(
        &test,
        "notes.txt",
        Some("before\none\ntyped at two\n"),
        &said,
    );
    assert!(said.contains("keeping 3 path(s)"), "{said}");
}

/// The same with `rollback.to: step`: step three goes back to the tree it started
/// from, after its prompt was answered, so the edit typed at that prompt is not even
/// in what it takes back.
#[test]
fn an_edit_at_the_prompt_of_an_approved_step_that_fails_survives_its_step_rollback() {
    let test = Test::new().write("notes.txt", "before\n").policy(&format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: step }}\n{THREE_STEPS}"
    ));
    let said = at_prompts(&test, &[(EDIT_TWO, "y"), (EDIT_THREE, "y")]);
    assert!(said.contains("exit 4\n"), "{said}");
    holds(&test, "three.txt", None, &said);
    holds(&test, "two.txt", Some("two\n"), &said);
    holds(&test, "mine2.txt", Some("at two\n"), &said);
    holds(&test, "mine3.txt", Some("at three\n"), &said);
    let snap = &test.record()["snapshot"];
    assert_eq!(snap["state"], "applied", "{snap:#}");
    assert_eq!(snap["late"].as_array().map_or(0, Vec::len), 0, "{snap:#}");
    assert!(!said.contains("keeping"), "{said}");
}

/// What the user typed at a prompt and a later step then changed again is the run's
/// change: the rollback takes it back with the rest, and keeps nothing.
#[test]
fn a_path_edited_at_a_prompt_and_changed_again_by_a_later_step_is_rolled_back() {
    let test = Test::new().write("notes.txt", "before\n").policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { to: start }\nsteps:\n  \
         - { name: one, run: \"echo one > one.txt\" }\n  \
         - { name: two, run: \"echo two >> notes.txt; exit 4\", approve: true }\n",
    );
    let edit = "with open(\"notes.txt\", \"a\") as f:\n    f.write(\"mine\\n\")\ntime.sleep(0.2)\n";
    let said = at_prompts(&test, &[(edit, "y")]);
    assert!(said.contains("exit 4\n"), "{said}");
    holds(&test, "notes.txt", Some("before\n"), &said);
    holds(&test, "one.txt", None, &said);
    assert!(!said.contains("keeping"), "{said}");
}

/// Steps that follow each other at once, each writing as it starts, the last one
/// failing: every write is the command's, however close to a step's start, and the
/// rollback keeps nothing.
#[test]
fn writes_at_the_very_start_of_each_step_are_all_rolled_back() {
    let steps: String = (0..6)
        .map(|i| {
            let exit = if i == 5 { "; exit 4" } else { "" };
            format!(
                "  - {{ name: s{i}, run: \"echo {i} >> notes.txt; echo {i} > f{i}.txt{exit}\" }}\n"
            )
        })
        .collect();
    let test = Test::new()
        .write("notes.txt", "before\n")
        .policy(&format!(
            "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: start }}\nsteps:\n{steps}"
        ))
        .args(&["run", "-p", "backstop.yaml"])
        .status(4)
        .stderr_lacks("keeping");
    let out = test.run();
    assert_eq!(
        std::fs::read_to_string(out.path().join("notes.txt"))
            .ok()
            .as_deref(),
        Some("before\n"),
        "{}",
        out.stderr
    );
    for i in 0..6 {
        assert!(
            !out.path().join(format!("f{i}.txt")).exists(),
            "{}",
            out.stderr
        );
    }
}

/// A run that makes a directory unreadable and leaves more than the store may take
/// (so the rollback walks the tree itself, opening that directory first): the
/// directory's fresh ctime is backstop's own doing, not a later edit, and its mode is
/// put back with the rest.
#[test]
fn a_directory_the_rollback_opened_to_walk_it_is_not_judged_a_later_edit() {
    let mut test = Test::new().write("d/f", "x\n").policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { scope: { max_total_size: 64KiB } }\n",
    );
    // A tree the walk after the run takes a while over: the directory is opened well
    // after the command ended.
    for i in 0..2000 {
        test = test.write(&format!("many/{i}"), "");
    }
    std::fs::set_permissions(
        test.path().join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = test
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "chmod 000 d; head -c 100000 /dev/zero > big; exit 1",
        ])
        .status(1)
        .stderr_lacks("keeping")
        .run();
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(out.path().join("d")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o755, "{}", out.stderr);
    assert!(!out.path().join("big").exists(), "{}", out.stderr);
}

/// A `kill -9` at each crash point of a run whose rollback keeps the user's edits,
/// then `runs` (which finishes a half-done put-back), `show`, `redo` and `undo`: the
/// user's edits are never lost, the record can always be read, and once the rollback
/// is done the run's own change is out of the tree.
#[test]
fn a_kill_at_every_point_of_a_rollback_that_keeps_paths_loses_no_edit() {
    kill_campaign("start");
}

/// The same for a step rolled back to its checkpoint: the prompt's edits survive
/// every kill, and step one's work stays.
#[test]
fn a_kill_at_every_point_of_a_step_rollback_that_keeps_paths_loses_no_edit() {
    kill_campaign("step");
}

fn kill_campaign(to: &str) {
    let policy = format!(
        "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: {to} }}\nsteps:\n  \
         - {{ name: one, run: \"echo one > one.txt && echo run >> notes.txt\" }}\n  \
         - {{ name: two, run: \"echo two > two.txt\", approve: true }}\n"
    );
    let policy = policy.as_str();
    let mut finished = false;
    for n in 1..200 {
        let test = Test::new().write("notes.txt", "before\n").policy(policy);
        let script = format!(
            r#"{PTY}
os.environ["BACKSTOP_CRASH_AT"] = "*:{n}"
pid, fd = start("run", "-p", policy)
seen = b""
while b"[y/N]" not in seen:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        chunk = b""
    if not chunk:
        break
    seen += chunk
if b"[y/N]" in seen:
    with open("mine.txt", "w") as f:
        f.write("mine\n")
    with open("notes.txt", "a") as f:
        f.write("typed at the prompt\n")
    os.write(fd, b"n\n")
    print("prompted")
text = read_all(fd).decode(errors="replace")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
print(seen.decode(errors="replace") + text)
"#
        );
        let said = drive(&test, &script);
        let runs = test.backstop(&["runs", "--json"]);
        assert_eq!(runs.status, 0, "point {n}: {}\n{said}", runs.stderr);
        if said.contains("prompted") {
            let mine = || (read(&test, "mine.txt"), read(&test, "notes.txt"));
            let want = (
                Some("mine\n".to_string()),
                Some("before\nrun\ntyped at the prompt\n".to_string()),
            );
            assert_eq!(mine(), want, "point {n}: {said}");
            let show = test.backstop(&["show"]);
            assert_eq!(show.status, 0, "point {n}: {}", show.stderr);
            let state = test.record()["snapshot"]["state"].clone();
            if said.contains("exit 1\n") {
                finished = true;
                let want = (to == "step").then(|| "one\n".to_string());
                assert_eq!(read(&test, "one.txt"), want, "point {n}: {said}");
            }
            if state == "rolled-back" {
                assert_eq!(read(&test, "one.txt"), None, "point {n}: {said}");
                let redo = test.backstop(&["redo"]);
                assert_eq!(redo.status, 0, "point {n}: {}", redo.stderr);
                assert_eq!(
                    read(&test, "one.txt").as_deref(),
                    Some("one\n"),
                    "point {n}"
                );
                assert_eq!(mine(), want, "point {n}: after redo");
            }
            // Whatever the run's state, undo takes back the run's own work only.
            let undo = test.backstop(&["undo"]);
            assert!(
                [0, 1, 125].contains(&undo.status),
                "point {n}: {} {}",
                undo.status,
                undo.stderr
            );
            assert_eq!(mine(), want, "point {n}: after undo: {}", undo.stderr);
            if said.contains("exit 1\n") {
                break;
            }
        }
    }
    assert!(finished, "the campaign never reached the end of a run");
}

/// Two names of one file before the run; the step writes the file through one name,
/// the user at the prompt replaces the other name with a file of their own (which
/// moves the shared inode's ctime: its link count drops). The rollback keeps the
/// user's file, and gives the first name its own content from before the run — not
/// kept as a later edit, nor made a link to the user's file.
#[test]
fn a_path_hard_linked_before_the_run_to_a_replaced_kept_path_gets_its_own_content_back() {
    let test = Test::new().write("a", "orig\n").policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { to: start }\nsteps:\n  \
         - { name: one, run: \"echo cmd > a\" }\n  \
         - { name: two, run: \"true\", approve: true }\n",
    );
    std::fs::hard_link(test.path().join("a"), test.path().join("b")).unwrap();
    let edit = "os.unlink(\"b\")\nwith open(\"b\", \"w\") as f:\n    f.write(\"mine\\n\")\n";
    let said = at_prompts(&test, &[(edit, "n")]);
    assert!(said.contains("exit 1\n"), "{said}");
    holds(&test, "b", Some("mine\n"), &said);
    holds(&test, "a", Some("orig\n"), &said);
    assert!(said.contains("not by the run: b\r\n"), "{said}");
    // Two files now, not two names of the user's.
    std::fs::write(test.path().join("b"), "mine, again\n").unwrap();
    assert_eq!(read(&test, "a").as_deref(), Some("orig\n"));
}

/// A run whose rollback kept every change (all made at its first prompt, before any
/// step ran) has nothing of its own out of the tree: a bare `redo` passes over it to
/// the undone run before it, and a bare `undo` passes over it too.
#[test]
fn a_bare_redo_passes_over_a_run_whose_rollback_kept_every_change() {
    let test = Test::new().policy("version: 1\nretry: { max_attempts: 1 }\n");
    let first = test.backstop(&["run", "--", "sh", "-c", "echo a > a.txt"]);
    assert_eq!(first.status, 0, "{}", first.stderr);
    let undo = test.backstop(&["undo"]);
    assert_eq!(undo.status, 0, "{}", undo.stderr);
    assert_eq!(read(&test, "a.txt"), None);
    std::fs::write(
        test.path().join("backstop.yaml"),
        "version: 1\nretry: { max_attempts: 1 }\nsteps:\n  \
         - { name: one, run: \"echo one > one.txt\", approve: true }\n",
    )
    .unwrap();
    let edit = "with open(\"mine.txt\", \"w\") as f:\n    f.write(\"mine\\n\")\n";
    let said = at_prompts(&test, &[(edit, "n")]);
    assert!(said.contains("keeping 1 path(s)"), "{said}");
    holds(&test, "mine.txt", Some("mine\n"), &said);

    let redo = test.backstop(&["redo"]);
    assert_eq!(redo.status, 0, "{}", redo.stderr);
    assert_eq!(
        read(&test, "a.txt").as_deref(),
        Some("a\n"),
        "{}",
        redo.stderr
    );
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"));
    let undo = test.backstop(&["undo"]);
    assert_eq!(undo.status, 0, "{}", undo.stderr);
    holds(&test, "a.txt", None, &undo.stderr);
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"));
}

/// A FUSE mount inside the scope (here `bindfs`, skipped where it is missing): its
/// inode times come from its server, which may run ahead of this clock, so nothing
/// there is judged changed after the command ended, as for a FUSE root. The run's
/// write there is rolled back; the user's edit on the root's own filesystem is kept.
#[test]
fn nothing_on_a_fuse_mount_inside_the_scope_is_judged_a_later_edit() {
    let test = Test::new().write("notes.txt", "before\n").policy(
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { to: start }\nsteps:\n  \
         - { name: one, run: \"echo one > mnt/one.txt\" }\n  \
         - { name: two, run: \"true\", approve: true }\n",
    );
    let src = test.out_path().join("fuse-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(test.path().join("mnt")).unwrap();
    let mounted = std::process::Command::new("bindfs")
        .arg(&src)
        .arg(test.path().join("mnt"))
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Said past the test harness's capture, so a CI log shows it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED nothing_on_a_fuse_mount_inside_the_scope_is_judged_a_later_edit: bindfs cannot mount here"
        );
        return;
    }
    let _unmount = crate::undo::Mount(test.path().join("mnt"));
    // The step writes mnt/one.txt; at the prompt the user edits it, and notes.txt.
    let edit = "with open(\"mnt/one.txt\", \"a\") as f:\n    f.write(\"mine\\n\")\n\
                with open(\"notes.txt\", \"a\") as f:\n    f.write(\"mine\\n\")\n";
    let said = at_prompts(&test, &[(edit, "n")]);
    assert!(said.contains("exit 1\n"), "{said}");
    holds(&test, "mnt/one.txt", None, &said);
    holds(&test, "notes.txt", Some("before\nmine\n"), &said);
    assert!(said.contains("not by the run: notes.txt\r\n"), "{said}");
}

/// On a filesystem that keeps whole seconds (ext4 with 128-byte inodes, on a loop
/// device; skipped where one cannot be mounted), a step's first write gets a ctime
/// rounded down, into the wait at its prompt: it is still the command's, and rolled
/// back.
#[test]
fn a_steps_write_rounded_down_into_the_wait_before_it_is_still_rolled_back() {
    let _mounting = crate::helpers::mounting();
    let test = Test::new();
    let image = test.out_path().join("seconds.img");
    let made = std::process::Command::new("truncate")
        .args(["-s", "32M"])
        .arg(&image)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new("mkfs.ext4")
            .args(["-q", "-I", "128"])
            .arg(&image)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        && std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(test.path())
            .status()
            .is_ok_and(|s| s.success());
    if !made {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_steps_write_rounded_down_into_the_wait_before_it_is_still_rolled_back: cannot mount a loop device here"
        );
        return;
    }
    let _unmount = crate::undo::Mount(test.path());
    std::fs::write(
        test.path().join("backstop.yaml"),
        "version: 1\nretry: { max_attempts: 1 }\nrollback: { to: start }\nsteps:\n  \
         - { name: one, run: \"echo one > one.txt\" }\n  \
         - { name: two, run: \"echo two > two.txt; exit 4\", approve: true }\n",
    )
    .unwrap();
    // A user who thinks a second and a half before answering.
    let said = at_prompts(&test, &[("time.sleep(1.5)\n", "y")]);
    assert!(said.contains("exit 4\n"), "{said}");
    holds(&test, "two.txt", None, &said);
    holds(&test, "one.txt", None, &said);
    assert!(!said.contains("keeping"), "{said}");
}

/// `between_attempts: restore` gives each attempt of a step the tree its first attempt
/// started from — which holds what the user typed at the step's prompt, approved
/// after it: the restore before a retry takes back the failed attempt's work, never
/// that edit, and neither does the rollback after the last attempt.
#[test]
fn a_restore_between_attempts_keeps_what_the_user_typed_at_the_steps_prompt() {
    let test = Test::new().write("notes.txt", "before\n").policy(
        "version: 1\nretry: { max_attempts: 2, backoff: { initial: 1ms, max: 1ms } }\n\
         rollback: { to: start, between_attempts: restore }\nsteps:\n  \
         - { name: one, run: \"echo one > one.txt\" }\n  \
         - { name: two, run: \"echo try >> tries.txt; cat mine.txt >> $OUT/seen; exit 4\", approve: true }\n",
    );
    let edit = "with open(\"mine.txt\", \"w\") as f:\n    f.write(\"mine\\n\")\ntime.sleep(0.2)\n";
    let said = at_prompts(&test, &[(edit, "y")]);
    assert!(said.contains("exit 4\n"), "{said}");
    // Both attempts saw the user's file, and it is still there.
    assert_eq!(test.read("seen"), "mine\nmine\n", "{said}");
    holds(&test, "mine.txt", Some("mine\n"), &said);
    holds(&test, "tries.txt", None, &said);
    holds(&test, "one.txt", None, &said);
}

/// What an ordinary command does that moves only metadata — a mode, an owner, a
/// modification time set far in the future (`touch -d`: the ctime is still now), a
/// file swapped for a symlink — is the command's: a failed run takes back all that
/// its change set holds, and keeps nothing as a later edit.
#[test]
fn mode_owner_future_mtime_and_symlink_swaps_by_the_command_are_all_rolled_back() {
    let test = Test::new()
        .write("mode", "m\n")
        .write("owner", "o\n")
        .write("future", "f\n")
        .write("swapped", "s\n")
        .policy("version: 1\nretry: { max_attempts: 1 }\n");
    let before = |name: &str| std::fs::symlink_metadata(test.path().join(name)).unwrap();
    use std::os::unix::fs::MetadataExt;
    let (mode, uid, mtime) = (
        before("mode").mode(),
        before("owner").uid(),
        before("future").mtime(),
    );
    let out = test
        .args(&[
            "run",
            "--",
            "sh",
            "-c",
            "chmod 600 mode; chown 1:1 owner; touch -d 2099-01-01 future; \
             rm swapped; ln -s /etc/hostname swapped; sleep 0.1; exit 3",
        ])
        .status(3)
        .stderr_lacks("keeping")
        .run();
    let now = |name: &str| std::fs::symlink_metadata(out.path().join(name)).unwrap();
    assert_eq!(now("mode").mode(), mode, "{}", out.stderr);
    assert_eq!(now("owner").uid(), uid, "{}", out.stderr);
    // A time alone is no change of the change set (content, type and mode are): the
    // file is as it was but for its mtime, and nothing is named kept.
    assert!(now("future").mtime() >= mtime, "{}", out.stderr);
    assert!(now("swapped").is_file(), "{}", out.stderr);
}

/// A run that succeeds after the user typed at a step's prompt: its change set holds
/// the user's edit (the tree changed while the run was live), but no process of the
/// run was running then. `undo` takes back the steps' work, says which paths it
/// leaves, and leaves them.
#[test]
fn undo_of_a_run_that_succeeded_leaves_what_the_user_typed_at_its_prompt() {
    let test = Test::new().write("notes.txt", "before\n").policy(
        "version: 1\nretry: { max_attempts: 1 }\nsteps:\n  \
         - { name: one, run: \"echo one > one.txt\" }\n  \
         - { name: two, run: \"echo two > two.txt\", approve: true }\n",
    );
    let said = at_prompts(&test, &[(MINE, "y")]);
    assert!(said.contains("exit 0\n"), "{said}");
    let show = test.backstop(&["show"]);
    assert!(
        show.stdout
            .contains("2 path(s) not the run's, changed after the command had ended"),
        "{}",
        show.stdout
    );
    let undo = test.backstop(&["undo"]);
    assert_eq!(undo.status, 0, "{}", undo.stderr);
    assert!(
        undo.stderr.contains("leaving 2 path(s) changed after run")
            && undo.stderr.contains("mine.txt, notes.txt"),
        "{}",
        undo.stderr
    );
    holds(&test, "one.txt", None, &undo.stderr);
    holds(&test, "two.txt", None, &undo.stderr);
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"));
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("before\ntyped at the prompt\n")
    );
    assert_eq!(test.record()["snapshot"]["state"], "undone");
}
