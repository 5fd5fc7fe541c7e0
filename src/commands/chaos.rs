//! `backstop chaos serve`: the fault model loaded, then the server until a signal.

use std::path::PathBuf;

use anyhow::Result;

use crate::chaos::serve::{ServeOptions, serve as run_server};

/// What `backstop chaos serve` was asked.
#[derive(Clone, Debug)]
pub struct ServeArgs {
    pub faults: PathBuf,
    pub upstream: Option<String>,
    pub listen: String,
    pub seed: u64,
    pub json: bool,
}

pub fn serve(args: &ServeArgs, quiet: bool) -> Result<u8> {
    let faults = crate::chaos::model::load_file(&args.faults)?;
    run_server(ServeOptions {
        faults,
        listen: args.listen.clone(),
        upstream: args.upstream.clone(),
        seed: args.seed,
        json: args.json,
        quiet,
    })
}
