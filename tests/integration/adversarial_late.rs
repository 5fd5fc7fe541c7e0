//! Attacks on the rule that a rollback keeps what changed after the command's
//! processes had all ended: no user edit is lost, everything the command did is
//! taken back, and the record, `show`, `undo` and `redo` agree afterwards.

use crate::helpers::Test;
use crate::job_control::{PTY, drive};

/// Runs `backstop run -p backstop.yaml` on a pty. At the n-th `[y/N]` prompt it runs
/// the python code `prompts[n].0`, then types `prompts[n].1` (`y` or `n`). Returns
/// what the terminal showed, after a line `exit N`.
fn at_prompts(test: &Test, prompts: &[(&str, &str)]) -> String {
    let mut script =
        format!("{PTY}\npid, fd = start(\"run\", \"-p\", policy)\nseen = b\"\"\nasked = 0\n");
    for (edit, answer) in prompts {
        script.push_str(&format!(
            r#"
asked += 1
while seen.count(b"[y/N]") < asked:
    chunk = os.read(fd, 4096)
    if not chunk:
        sys.exit("no prompt: " + seen.decode(errors="replace"))
    seen += chunk
{edit}
os.write(fd, b"{answer}\n")
"#
        ));
    }
    script.push_str(
        r#"
text = read_all(fd).decode(errors="replace")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status))
print(seen.decode(errors="replace") + text)
"#,
    );
    drive(test, &script)
}

fn read(test: &Test, name: &str) -> Option<String> {
    std::fs::read_to_string(test.path().join(name)).ok()
}

const MINE: &str = r#"
with open("mine.txt", "w") as f:
    f.write("mine\n")
with open("notes.txt", "a") as f:
    f.write("typed at the prompt\n")
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
    assert_eq!(read(&test, "one.txt"), None, "{said}");
    assert_eq!(read(&test, "mine.txt").as_deref(), Some("mine\n"), "{said}");

    let redo = test.backstop(&["redo"]);
    assert_eq!(redo.status, 0, "{}", redo.stderr);
    assert_eq!(read(&test, "one.txt").as_deref(), Some("one\n"));
    // The record still says which paths were kept, and show still marks them.
    let snap = &test.record()["snapshot"];
    assert_eq!(snap["late"].as_array().map_or(0, Vec::len), 2, "{snap:#}");
    let show = test.backstop(&["show"]);
    let mine = show.stdout.lines().find(|l| l.contains("mine.txt"));
    assert!(
        mine.is_some_and(|l| l.ends_with("(kept: changed after the command had ended)")),
        "{}",
        show.stdout
    );

    let undo = test.backstop(&["undo"]);
    assert_eq!(undo.status, 0, "{}", undo.stderr);
    assert_eq!(read(&test, "one.txt"), None, "{}", undo.stderr);
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
