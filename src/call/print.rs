//! Where a model's answer is shown, in one place: live as it streams, or whole once
//! the attempt succeeded; and the note that a live answer did not count.
//!
//! Every write goes through a thread of its own (`process::StdoutWriter`,
//! `process::write_stdout`): a reader that stops reading must not freeze the run, so
//! the attempt's limit and signals still act. Not `println!` either: a reader that
//! went away (`| head -c 10`) must not panic us.

use crate::attempt::End;
use crate::engine::Interrupt;
use crate::process::{StdoutWriter, write_stdout};

/// Where a model's answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Print {
    /// To stdout once the attempt has succeeded.
    AtEnd,
    /// To stdout as it streams in.
    Live,
    /// Nowhere: the caller prints it (`--json`).
    Never,
}

/// Where the client's own lines for people go, as the caller says: on stderr beside
/// the reporter's, or nowhere under `-q`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notes {
    Stderr,
    Quiet,
}

impl Notes {
    /// The notes a command line asks for, as [`crate::reporter::Reporter::for_stderr`].
    pub fn for_stderr(quiet: bool) -> Notes {
        if quiet { Notes::Quiet } else { Notes::Stderr }
    }

    fn say(self, text: &str) {
        if self == Notes::Stderr {
            eprintln!("backstop: {text}");
        }
    }
}

/// One attempt's answer on its way to stdout.
pub(super) struct AnswerOut {
    print: Print,
    notes: Notes,
    interrupt: Interrupt,
    /// One thread for a live answer's writes, started at its first: some text shown.
    writer: Option<StdoutWriter>,
}

impl AnswerOut {
    pub(super) fn new(print: Print, notes: Notes, interrupt: Interrupt) -> AnswerOut {
        AnswerOut {
            print,
            notes,
            interrupt,
            writer: None,
        }
    }

    /// Shows text as it streams in, under [`Print::Live`]; an `Interrupted` end if a
    /// signal came while a reader held the write up.
    pub(super) async fn live(&mut self, text: Vec<u8>) -> Result<(), End> {
        if self.print != Print::Live || text.is_empty() {
            return Ok(());
        }
        let writer = self.writer.get_or_insert_with(StdoutWriter::start);
        writer
            .write(text, &mut self.interrupt)
            .await
            .map_err(|signal| End::Interrupted { signal })
    }

    /// Finishes the answer once the exchange came to its own `end`: a live one gets its
    /// last newline, and a note when it does not count; one kept for the end is printed
    /// if it counts. The end, or `Interrupted` if a signal came while writing.
    pub(super) async fn finish(mut self, end: End, text: Option<&str>) -> End {
        let written = match (&self.writer, self.print, text) {
            (Some(writer), ..) if !matches!(end, End::Interrupted { .. }) => {
                writer.write(b"\n".to_vec(), &mut self.interrupt).await
            }
            (None, Print::AtEnd, Some(text)) if end.success() => {
                let mut bytes = text.as_bytes().to_vec();
                if !text.ends_with('\n') {
                    bytes.push(b'\n');
                }
                write_stdout(bytes, &mut self.interrupt).await
            }
            _ => Ok(()),
        };
        let end = match written {
            Ok(()) => end,
            Err(signal) => End::Interrupted { signal },
        };
        if self.writer.is_some() && !end.success() {
            self.notes.say(&format!(
                "the answer above was cut off ({}); it does not count",
                end.describe()
            ));
        }
        end
    }
}
