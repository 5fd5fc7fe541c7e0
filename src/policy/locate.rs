//! Finds the line and column of a key path (`fallback.chain[1].run`) in YAML text.
//!
//! serde_yaml reports positions for errors it raises itself; checks that span several
//! keys run after parsing and use this to point at the key they are about. It reads
//! block and flow style well enough to land on the right key or, failing that, on the
//! nearest enclosing one.

/// 1-based (line, column) of the last segment of `path` that could be found.
pub fn locate(text: &str, path: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let mut at = (0usize, 0usize); // (line index, column index)
    let mut found = (1, 1);
    for segment in path.split('.') {
        let (key, indices) = split_indices(segment);
        match find_key(&lines, at, key) {
            Some(pos) => {
                at = pos;
                found = (pos.0 + 1, pos.1 + 1);
            }
            None => return found,
        }
        for index in indices {
            match find_item(&lines, at.0, index) {
                Some(pos) => {
                    at = pos;
                    found = (pos.0 + 1, pos.1 + 1);
                }
                None => return found,
            }
        }
    }
    found
}

fn split_indices(segment: &str) -> (&str, Vec<usize>) {
    let key_end = segment.find('[').unwrap_or(segment.len());
    let indices = segment[key_end..]
        .split(['[', ']'])
        .filter_map(|s| s.parse().ok())
        .collect();
    (&segment[..key_end], indices)
}

fn find_key(lines: &[&str], from: (usize, usize), key: &str) -> Option<(usize, usize)> {
    for (i, line) in lines.iter().enumerate().skip(from.0) {
        let start = if i == from.0 { from.1 } else { 0 };
        let mut search = start;
        while let Some(off) = line.get(search..).and_then(|s| s.find(key)) {
            let col = search + off;
            let before = line[..col].chars().last();
            let after = line[col + key.len()..].trim_start();
            let boundary = before.is_none_or(|c| c.is_whitespace() || "{,-".contains(c));
            if boundary && after.starts_with(':') && !line[..col].contains('#') {
                return Some((i, col));
            }
            search = col + key.len();
        }
    }
    None
}

/// The `index`-th item of the block sequence that follows the key on line `key_line`.
fn find_item(lines: &[&str], key_line: usize, index: usize) -> Option<(usize, usize)> {
    let key_indent = indent(lines[key_line]);
    let mut item_indent = None;
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate().skip(key_line + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = indent(line);
        if ind < key_indent || (ind == key_indent && !trimmed.starts_with('-')) {
            return None;
        }
        if trimmed.starts_with('-') && item_indent.is_none_or(|n| n == ind) {
            item_indent = Some(ind);
            if seen == index {
                let after_dash = trimmed[1..].len() - trimmed[1..].trim_start().len();
                return Some((i, ind + 1 + after_dash));
            }
            seen += 1;
        }
    }
    None
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[cfg(test)]
mod tests {
    use super::locate;

    const TEXT: &str = "version: 1\nretry:\n  max_attempts: 3\n  backoff: { kind: linear, max: 2s }\nfallback:\n  chain:\n    - run: [a]\n    - default:\n        stdout: x\n      timeout: 0s\n";

    #[test]
    fn finds_block_and_flow_keys() {
        assert_eq!(locate(TEXT, "retry.max_attempts"), (3, 3));
        assert_eq!(locate(TEXT, "retry.backoff.max"), (4, 28));
    }

    #[test]
    fn finds_sequence_items() {
        assert_eq!(locate(TEXT, "fallback.chain[0]"), (7, 7));
        assert_eq!(locate(TEXT, "fallback.chain[1].timeout"), (10, 7));
    }

    #[test]
    fn falls_back_to_the_nearest_known_key() {
        assert_eq!(locate(TEXT, "retry.nothing"), (2, 1));
    }
}
