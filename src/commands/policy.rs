//! `backstop policy check | explain | schema`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::exit_code::SUCCESS;
use crate::policy::{self, explain};

pub fn check(file: &Path, quiet: bool) -> Result<u8> {
    let policy = policy::load_file(file)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# {}: valid; resolved with every default",
        crate::names::quote_path(file)
    )?;
    out.write_all(serde_yaml::to_string(&policy)?.as_bytes())?;
    if !quiet {
        for w in explain::warnings(&policy) {
            eprintln!("backstop: warning: {w}");
        }
    }
    Ok(SUCCESS)
}

pub fn explain(file: &Path) -> Result<u8> {
    let policy = policy::load_file(file)?;
    std::io::stdout().write_all(explain::explain(&policy).as_bytes())?;
    Ok(SUCCESS)
}

pub fn schema() -> Result<u8> {
    std::io::stdout().write_all(policy::schema::schema_json().as_bytes())?;
    Ok(SUCCESS)
}
