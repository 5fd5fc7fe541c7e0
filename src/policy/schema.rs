//! The JSON Schema of the policy format, for editors (`backstop policy schema`).

/// The schema as pretty-printed JSON, ending in a newline.
pub fn schema_json() -> String {
    schema_json_of::<super::raw::RawPolicy>()
}

/// The schema of any file format backstop reads (the policy, the fault model), as
/// pretty-printed JSON ending in a newline.
pub fn schema_json_of<T: schemars::JsonSchema>() -> String {
    let schema = schemars::schema_for!(T);
    let mut out = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    out.push('\n');
    out
}

/// Asserts that the committed schema at `path` is `want`; `BACKSTOP_BLESS=1 cargo test`
/// rewrites it.
#[cfg(test)]
pub(crate) fn assert_committed(path: &std::path::Path, want: &str) {
    if std::env::var_os("BACKSTOP_BLESS").is_some() {
        std::fs::write(path, want).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(path).unwrap_or_default(),
        want,
        "{} is out of date: run with BACKSTOP_BLESS=1",
        path.display()
    );
}
