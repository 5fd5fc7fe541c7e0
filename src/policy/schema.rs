//! The JSON Schema of the policy format, for editors (`backstop policy schema`).

/// The schema as pretty-printed JSON, ending in a newline.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(super::raw::RawPolicy);
    let mut out = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    out.push('\n');
    out
}
