//! Bounds on a policy file checked on its raw text, before serde_yaml parses it.
//!
//! `./backstop.yaml` is loaded by every run in its directory, so a checked-out
//! repository must not be able to stall backstop with its policy. serde_yaml's
//! parser takes time quadratic in the depth of flow collections (200 KB of `[` took
//! 35 s), and its own recursion limit applies only after the whole text is parsed;
//! so the depth is measured here, in one pass, and a file too large or too deep is
//! refused before parsing starts.

/// The largest policy file read: far above any real policy.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// The deepest nesting of flow collections (`[...]`, `{...}`) a policy may write.
pub const MAX_FLOW_DEPTH: usize = 64;

/// What is wrong, and the 1-based line and column where it was seen.
#[derive(Debug, PartialEq, Eq)]
pub struct TooMuch {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Refuses a text longer than [`MAX_POLICY_BYTES`].
pub fn check_size(len: usize) -> Result<(), String> {
    if len > MAX_POLICY_BYTES {
        return Err(format!(
            "the policy is over 1 MiB ({MAX_POLICY_BYTES} bytes), the largest a policy may be"
        ));
    }
    Ok(())
}

/// Refuses flow collections nested deeper than [`MAX_FLOW_DEPTH`].
///
/// A lexical scan, not a parser: quotes and comments are skipped; inside a flow
/// collection every bracket is structural (plain scalars cannot hold one there);
/// outside, a bracket opens a collection only where a node can start (after
/// indentation, `- `, `: `, `? `, a tag or an anchor). It may overcount in odd plain
/// scalars, never undercount, so what it lets through parses quickly.
pub fn check_depth(text: &str) -> Result<(), TooMuch> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1usize, 0usize);
    // Whether a node may start here outside flow: only spaces since a node indicator.
    let mut node_start = true;
    let mut chars = text.chars().peekable();
    let mut prev = '\n';
    while let Some(c) = chars.next() {
        column += 1;
        match c {
            '\n' => {
                line += 1;
                column = 0;
                node_start = true;
            }
            '#' if prev.is_whitespace() => while chars.next_if(|c| *c != '\n').is_some() {},
            '\'' | '"' if depth > 0 || node_start => {
                skip_quoted(c, &mut chars, &mut line, &mut column);
                node_start = false;
            }
            '[' | '{' if depth > 0 || node_start => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(TooMuch {
                        line,
                        column,
                        message: format!("collections nested deeper than {MAX_FLOW_DEPTH} levels"),
                    });
                }
            }
            ']' | '}' if depth > 0 => depth -= 1,
            ' ' | '\t' | '\r' => {}
            '-' | ':' | '?' | ',' if chars.peek().is_none_or(|n| n.is_whitespace()) => {
                node_start = true;
            }
            '&' | '!' if node_start => {
                // An anchor or a tag: the node starts after it.
                while chars.next_if(|c| !c.is_whitespace()).is_some() {
                    column += 1;
                }
            }
            _ => node_start = false,
        }
        prev = c;
    }
    Ok(())
}

/// Skips a quoted scalar whose opening quote was just read, counting lines.
fn skip_quoted(
    quote: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: &mut usize,
    column: &mut usize,
) {
    while let Some(c) = chars.next() {
        *column += 1;
        match c {
            '\n' => {
                *line += 1;
                *column = 0;
            }
            '\\' if quote == '"' => {
                if chars.next() == Some('\n') {
                    *line += 1;
                    *column = 0;
                } else {
                    *column += 1;
                }
            }
            // `''` inside single quotes is a quote, read as two quoted scalars in a
            // row, which changes nothing here.
            c if c == quote => return,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        check_depth(text).is_ok()
    }

    #[test]
    fn deep_flow_nesting_is_refused_where_it_crosses_the_limit() {
        let text = format!("version: 1\nx: {}", "[".repeat(100));
        let err = check_depth(&text).unwrap_err();
        assert_eq!((err.line, err.column), (2, 4 + MAX_FLOW_DEPTH));
        let text = format!("version: 1\nx: {}1{}", "{a: ".repeat(65), "}".repeat(65));
        assert!(!depth_ok(&text));
    }

    #[test]
    fn the_limit_itself_and_real_policies_pass() {
        let ok = format!("x: {}{}", "[".repeat(64), "]".repeat(64));
        assert!(depth_ok(&ok));
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                assert!(
                    depth_ok(&std::fs::read_to_string(&path).unwrap()),
                    "{path:?}"
                );
            }
        }
    }

    #[test]
    fn brackets_in_strings_comments_and_plain_scalars_do_not_count() {
        let many = "[".repeat(200);
        assert!(depth_ok(&format!("a: '{many}'\nb: \"{many}\\\"{many}\"\n")));
        assert!(depth_ok(&format!("# {many}\nrun: echo a{many}\n")));
        assert!(depth_ok(&format!("run: [\"{many}\", '{many}']\n")));
        assert!(depth_ok(&format!("- x {many}\n- y {many}\n")));
    }

    #[test]
    fn anchors_and_tags_before_a_collection_count() {
        let text = format!("a: &x {}", "[".repeat(65));
        assert!(!depth_ok(&text));
        let text = format!("a: !!seq {}", "[".repeat(65));
        assert!(!depth_ok(&text));
    }

    #[test]
    fn size_over_one_mib_is_refused() {
        assert!(check_size(MAX_POLICY_BYTES).is_ok());
        let err = check_size(MAX_POLICY_BYTES + 1).unwrap_err();
        assert!(err.contains("1 MiB"), "{err}");
    }
}
