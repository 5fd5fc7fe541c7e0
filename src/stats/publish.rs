//! After each run: the store's cumulative tally (`metrics/tally.json`) gains the run,
//! then goes where `metrics:` says: a node_exporter textfile, a Pushgateway. Every
//! failure is a warning for the caller to print; none fails the run.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Facts;
use super::prometheus::Tally;
use crate::policy::Metrics;
use crate::snapshot::lock::FileLock;
use crate::store::layout;
use crate::store::{Durability, write_atomic};

/// The textfile's name in the collector's directory.
pub const TEXTFILE: &str = "backstop.prom";
/// How long a push may take, connecting included.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Adds `run` to the store's tally and publishes it as `metrics` says. Returns the
/// warnings to print (none when `metrics` names neither a textfile nor a Pushgateway,
/// which costs nothing).
pub fn after_run(store: &Path, metrics: &Metrics, run: &Facts) -> Vec<String> {
    if metrics.textfile.is_none() && metrics.pushgateway.is_none() {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    if let Err(e) = add_to_tally(store, run, metrics.textfile.as_deref(), &mut warnings) {
        warnings.push(format!("metrics not written: {e:#}"));
        return warnings;
    }
    if let Some(url) = &metrics.pushgateway
        && let Err(e) = push_latest(store, url)
    {
        warnings.push(format!("metrics not pushed: {e:#}"));
    }
    warnings
}

/// Adds `run` to the tally, written back under the store's metrics lock (runs ending
/// at once each add theirs), and rewrites the textfile from it before letting go: a
/// run that added itself earlier never writes its older tally over a later one. A
/// damaged tally starts again: to Prometheus a counter reset, which `rate()` and
/// `increase()` take in their stride.
fn add_to_tally(
    store: &Path,
    run: &Facts,
    textfile: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let file = layout::metrics_tally_file(store);
    let dir = file.parent().context("the tally has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let _lock = FileLock::exclusive(&layout::metrics_lock_file(store))?;
    let mut tally = read_tally(&file);
    tally.add(run);
    write_atomic(&file, &serde_json::to_vec(&tally)?, Durability::Atomic)?;
    if let Some(dir) = textfile
        && let Err(e) = write_textfile(dir, &tally.render())
    {
        warnings.push(format!("metrics textfile not written: {e:#}"));
    }
    Ok(())
}

fn read_tally(file: &Path) -> Tally {
    crate::store::read_plain(file, "metrics tally", 64 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The tally as it stands now, rendered.
fn latest(store: &Path) -> Result<String> {
    let _lock = FileLock::exclusive(&layout::metrics_lock_file(store))?;
    Ok(read_tally(&layout::metrics_tally_file(store)).render())
}

/// The most pushes one run makes while others keep adding to the tally.
const MAX_PUSHES: usize = 8;

/// Pushes the tally as it stands when it is sent, one push at a time, so the gateway
/// never goes back to an older tally (its counters would look reset). A run that finds
/// another pushing leaves its count to that one, which looks at the tally again after
/// letting go and pushes again if it changed: a run that added itself while the lock
/// was held added itself before that look.
fn push_latest(store: &Path, url: &str) -> Result<()> {
    let lock = layout::metrics_push_lock_file(store);
    let mut pushed: Option<String> = None;
    let mut pushes = 0;
    loop {
        let Some(pushing) = FileLock::try_exclusive(&lock)? else {
            return Ok(());
        };
        loop {
            let text = latest(store)?;
            if pushed.as_ref() == Some(&text) || pushes == MAX_PUSHES {
                break;
            }
            push(url, &text)?;
            pushes += 1;
            pushed = Some(text);
        }
        drop(pushing);
        if pushes == MAX_PUSHES || pushed == Some(latest(store)?) {
            return Ok(());
        }
    }
}

/// `DIR/backstop.prom`, replaced whole (node_exporter never reads half a file), and
/// readable by the collector's user.
pub fn write_textfile(dir: &Path, text: &str) -> Result<()> {
    let meta =
        std::fs::metadata(dir).with_context(|| format!("{} (metrics.textfile)", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("{} (metrics.textfile) is not a directory", dir.display());
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".backstop.prom.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
        })
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let path = dir.join(TEXTFILE);
    tmp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// PUT to `URL/metrics/job/backstop/instance/HOST`: the group holds this machine's
/// store as a whole, and machines sharing a gateway do not overwrite each other.
pub fn push(base: &str, text: &str) -> Result<()> {
    let url = group_url(base)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(PUSH_TIMEOUT)
        .timeout(PUSH_TIMEOUT)
        .build()
        .context("cannot make an HTTP client")?;
    let request = client
        .put(url.clone())
        .header("content-type", "text/plain; version=0.0.4")
        .body(text.to_string());
    let status = runtime
        .block_on(async { request.send().await })
        .map_err(|e| anyhow::anyhow!("{base}: {}", crate::call::exchange_error(&e)))?
        .status();
    if !status.is_success() {
        anyhow::bail!("{base} answered HTTP {}", status.as_u16());
    }
    Ok(())
}

fn group_url(base: &str) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).with_context(|| format!("{base}: not a URL"))?;
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{base}: cannot hold a path"))?
        .pop_if_empty()
        .extend(["metrics", "job", "backstop", "instance", host.as_str()]);
    Ok(url)
}
