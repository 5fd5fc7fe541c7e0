//! A rollback never takes back an edit made after the command's processes had all
//! ended — the user's, typed while a step waited for approval — and says which paths
//! it kept; `show` marks them, and `redo` re-applies the rest. Edits made while the
//! command was running are part of the run's change set, as the README says.

use crate::helpers::Test;
use crate::job_control::act_then_answer;

/// Runs `backstop run` on a pty; at the step's `[y/N]` prompt, plays a user who
/// edits `notes.txt`, creates `mine.txt` and a file in the directory step one made,
/// then answers `n`. Returns what the terminal showed, after a line `exit N`.
fn edit_then_decline(test: &Test) -> String {
    edit_at_prompt(
        test,
        r#"
with open("notes.txt", "a") as f:
    f.write("typed at the prompt\n")
with open("mine.txt", "w") as f:
    f.write("mine\n")
with open("made/by-me.txt", "w") as f:
    f.write("mine too\n")
"#,
    )
}

/// Runs `backstop run` on a pty; at the step's `[y/N]` prompt runs the python code
/// `edit`, then answers `n`.
fn edit_at_prompt(test: &Test, edit: &str) -> String {
    act_then_answer(test, edit, r"n\n")
}

fn read(test: &Test, name: &str) -> Option<String> {
    std::fs::read_to_string(test.path().join(name)).ok()
}

const STEPS: &str = r#"
steps:
  - { name: one, run: "echo one > one.txt && mkdir made && echo step > made/step.txt && echo run >> notes.txt" }
  - { name: two, run: "echo two > two.txt", approve: true }
"#;

#[test]
fn a_declined_run_rolled_back_to_its_start_keeps_what_the_user_edited_at_the_prompt() {
    let test = Test::new()
        .write("notes.txt", "mine from before\n")
        .policy(&format!(
            "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: start }}\n{STEPS}"
        ));
    let said = edit_then_decline(&test);
    assert!(said.contains("exit 1\n"), "{said}");
    // Step one's own work is rolled back...
    assert_eq!(read(&test, "one.txt"), None, "{said}");
    assert_eq!(read(&test, "made/step.txt"), None, "{said}");
    // ...but not what the user did after it had ended, nor the directory holding it.
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("mine from before\nrun\ntyped at the prompt\n"),
        "{said}"
    );
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"), "{said}");
    assert_eq!(
        read(&test, "made/by-me.txt").as_deref(),
        Some("mine too\n"),
        "{said}"
    );
    assert!(
        said.contains("keeping 4 path(s) changed after the command had ended (or holding one that was), not by the run: "),
        "{said}"
    );
    for name in ["made", "made/by-me.txt", "mine.txt", "notes.txt"] {
        assert!(said.contains(name), "{name} not named: {said}");
    }

    let record = test.record();
    let snap = &record["snapshot"];
    assert_eq!(snap["state"], "rolled-back", "{snap:#}");
    assert_eq!(snap["late"].as_array().map_or(0, Vec::len), 4, "{snap:#}");

    let show = test.backstop(&["show"]);
    assert_eq!(show.status, 0, "{}", show.stderr);
    let line = |path: &str| {
        show.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(path))
            .unwrap_or_else(|| panic!("{path} not listed: {}", show.stdout))
            .to_string()
    };
    assert!(
        line("mine.txt").ends_with("(kept: changed after the command had ended)"),
        "{}",
        show.stdout
    );
    assert!(
        line("one.txt").ends_with("(rolled back)"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout
            .contains("4 path(s) kept, changed after the command had ended"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("while the run was live"),
        "{}",
        show.stdout
    );

    // Redo brings back what the rollback took, and leaves the kept paths alone.
    let redo = test.backstop(&["redo"]);
    assert_eq!(redo.status, 0, "{}", redo.stderr);
    assert_eq!(read(&test, "one.txt").as_deref(), Some("one\n"));
    assert_eq!(read(&test, "made/step.txt").as_deref(), Some("step\n"));
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"));
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("mine from before\nrun\ntyped at the prompt\n")
    );
}

/// `rollback.to: step` goes back to the checkpoint taken before the prompt: what the
/// user typed while it waited was once rolled back with the declined step.
#[test]
fn a_declined_step_going_back_to_its_checkpoint_keeps_the_users_edits() {
    let test = Test::new()
        .write("notes.txt", "mine from before\n")
        .policy(&format!(
            "version: 1\nretry: {{ max_attempts: 1 }}\n{STEPS}"
        ));
    let said = edit_then_decline(&test);
    assert!(said.contains("exit 1\n"), "{said}");
    assert_eq!(read(&test, "one.txt").as_deref(), Some("one\n"), "{said}");
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"), "{said}");
    assert_eq!(
        read(&test, "made/by-me.txt").as_deref(),
        Some("mine too\n"),
        "{said}"
    );
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("mine from before\nrun\ntyped at the prompt\n"),
        "{said}"
    );
    assert!(said.contains("keeping 3 path(s)"), "{said}");
    let snap = &test.record()["snapshot"];
    assert_eq!(snap["late"].as_array().map_or(0, Vec::len), 3, "{snap:#}");
}

/// What changes while the command runs is the run's, whoever wrote it: the README
/// says so, and a rollback takes it back.
#[test]
fn an_edit_made_while_the_command_runs_is_rolled_back_with_it() {
    let test = Test::new()
        .write("notes.txt", "before\n")
        .policy("version: 1\nretry: { max_attempts: 1 }\n");
    let paused = crate::helpers::Paused::start(&test, "echo run > run.txt", "exit 3");
    std::fs::write(test.path().join("notes.txt"), "edited during the run\n").unwrap();
    let (code, stderr) = paused.resume();
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("before\n"),
        "{stderr}"
    );
    assert_eq!(read(&test, "run.txt"), None, "{stderr}");
    assert!(!stderr.contains("keeping"), "{stderr}");
}

/// A file the step made, edited in place by the user at the prompt (its directory's
/// times do not move): the file is kept, and so is the directory the rollback would
/// otherwise remove.
#[test]
fn a_file_the_step_made_and_the_user_then_edited_survives_with_its_directory() {
    let test = Test::new()
        .write("notes.txt", "mine from before\n")
        .policy(&format!(
            "version: 1\nretry: {{ max_attempts: 1 }}\nrollback: {{ to: start }}\n{STEPS}"
        ));
    let said = edit_at_prompt(
        &test,
        r#"
with open("made/step.txt", "a") as f:
    f.write("and my line\n")
"#,
    );
    assert!(said.contains("exit 1\n"), "{said}");
    assert_eq!(
        read(&test, "made/step.txt").as_deref(),
        Some("step\nand my line\n"),
        "{said}"
    );
    assert_eq!(read(&test, "one.txt"), None, "{said}");
    assert_eq!(
        read(&test, "notes.txt").as_deref(),
        Some("mine from before\n")
    );
    assert!(said.contains("keeping 2 path(s)"), "{said}");
    assert!(
        said.contains("not by the run: made, made/step.txt\r\n"),
        "{said}"
    );
    assert!(!said.contains("outside the snapshot's scope"), "{said}");
}
