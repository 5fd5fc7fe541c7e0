//! `-q` silences every line of backstop's own in `backstop call`, the model client's
//! included: a live answer cut off mid-stream is not noted on stderr.

use crate::call::{Sandbox, policy, stderr, stdout};
use crate::call_everyday::cut_then_whole;

#[test]
fn quiet_silences_the_note_of_a_live_answer_cut_off() {
    let server = cut_then_whole();
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-q", "-p", &p, "--stream=always", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "partial-one\nwhole\n",
        "the answer still shows"
    );
    assert_eq!(stderr(&out), "", "nothing of backstop's own");
}

#[test]
fn without_quiet_the_cut_off_answer_is_noted_once() {
    let server = cut_then_whole();
    let sb = Sandbox::new();
    let p = sb.policy(&policy(&server.url(), "openai", ""));
    let out = sb.run(&["call", "-p", &p, "--stream=always", "x"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let notes: Vec<_> = stderr(&out)
        .lines()
        .filter(|l| l.contains("cut off"))
        .map(String::from)
        .collect();
    assert_eq!(
        notes,
        [
            "backstop: the answer above was cut off (stream: the stream ended before its finish event); it does not count"
        ],
        "{}",
        stderr(&out)
    );
}
