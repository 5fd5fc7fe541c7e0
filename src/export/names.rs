//! How exports name what ran without what it was given: a command by its
//! executable's name, a link by its policy name unless that name is the command line
//! itself (a command's arguments and a prompt can carry secrets).

use crate::attempt::command_line;
use crate::policy::{Action, Policy};
use crate::record::RunRecord;

/// Which command made the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Run,
    Call,
}

impl Kind {
    pub fn span_name(self) -> &'static str {
        match self {
            Kind::Run => "backstop run",
            Kind::Call => "backstop call",
        }
    }
}

/// The last component of a path: `/usr/bin/make` → `make`.
pub fn base_name(program: &str) -> &str {
    program
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or(program)
}

/// The executable of a run of a command (`None` for a task of steps, whose record
/// names the steps).
pub fn executable(record: &RunRecord) -> Option<&str> {
    if !record.steps.is_empty() || record.command.first()?.starts_with("step:") {
        return None;
    }
    record.command.first().map(|p| base_name(p))
}

/// A link as exports name it: `call MODEL`, `default answer`, a name the policy gave,
/// or `run EXE` for a link whose name is its command line.
pub fn link_label(
    record: &RunRecord,
    policy: &Policy,
    kind: Kind,
    link: usize,
    recorded: &str,
) -> String {
    if link == 0 {
        return match kind {
            Kind::Call => recorded.to_string(),
            Kind::Run => executable(record)
                .map(str::to_string)
                .unwrap_or_else(|| first_word(recorded)),
        };
    }
    let Some(l) = policy.fallback.chain.get(link - 1) else {
        return format!("link {link}");
    };
    match &l.action {
        Action::Run(argv) if l.name.contains(&command_line(&argv.0)) => {
            format!(
                "run {}",
                base_name(argv.0.first().map_or("", String::as_str))
            )
        }
        Action::Escalate(e) if l.name.contains(&command_line(&e.run.0)) => {
            format!(
                "escalate {}",
                base_name(e.run.0.first().map_or("", String::as_str))
            )
        }
        _ => l.name.clone(),
    }
}

/// The program of a command line as `command_line` quoted it, without its arguments.
fn first_word(line: &str) -> String {
    let word = match line.chars().next() {
        Some(q @ ('\'' | '"')) => line[1..].split(q).next().unwrap_or(""),
        _ => line.split(' ').next().unwrap_or(""),
    };
    base_name(word).to_string()
}

#[cfg(test)]
mod tests {
    use super::{base_name, first_word};

    #[test]
    fn names_keep_no_arguments() {
        assert_eq!(base_name("/usr/bin/make"), "make");
        assert_eq!(base_name("make"), "make");
        assert_eq!(base_name("dir/"), "dir");
        assert_eq!(first_word("./agent.sh --token s3cret"), "agent.sh");
        assert_eq!(first_word("'my tool' --key x"), "my tool");
        assert_eq!(first_word(""), "");
    }
}
