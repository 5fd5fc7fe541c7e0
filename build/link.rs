//! Link arguments that make the binary cheaper to start, each passed only when the
//! linker takes it (a probe links an empty program with it first), so any other
//! linker builds the same program as before:
//!
//! * `-z pack-relative-relocs` (DT_RELR): the ~17,000 relative relocations of a
//!   position-independent binary as a bitmap of a few KiB instead of 400 KiB of
//!   RELA entries the dynamic loader reads at every start (glibc 2.36 or later
//!   runs it; older linkers ignore the option).
//! * `--symbol-ordering-file=build/hot-symbols.txt` (lld, mold): the functions a
//!   plain run executes first in `.text`, so a run touches few code pages. A
//!   symbol the binary lacks is skipped without a word; see scripts/hot-symbols.sh.
//!
//! std only.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The arguments for `cargo:rustc-link-arg-bins`, those the linker takes.
pub fn args(manifest_dir: &Path) -> Vec<String> {
    let Some(probe) = Probe::from_env() else {
        return Vec::new();
    };
    let ordering = manifest_dir.join("build/hot-symbols.txt");
    let mut wanted = vec!["-Wl,-z,pack-relative-relocs".to_string()];
    if let Some(file) = ordering.to_str().filter(|_| ordering.is_file()) {
        wanted.push(format!(
            "-Wl,--symbol-ordering-file={file},--no-warn-symbol-ordering"
        ));
    }
    wanted
        .into_iter()
        .filter(|arg| probe.links_with(arg))
        .collect()
}

/// Links an empty program the way cargo links ours: same rustc, target, linker and
/// flags.
struct Probe {
    rustc: PathBuf,
    target: String,
    linker: Option<String>,
    rustflags: Vec<String>,
    dir: PathBuf,
}

impl Probe {
    fn from_env() -> Option<Probe> {
        let var = |name| std::env::var(name).ok();
        let encoded = var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
        Some(Probe {
            rustc: PathBuf::from(var("RUSTC")?),
            target: var("TARGET")?,
            linker: var("RUSTC_LINKER"),
            rustflags: encoded
                .split('\x1f')
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect(),
            dir: PathBuf::from(var("OUT_DIR")?),
        })
    }

    /// Whether the linker takes `arg`; the answer is kept in `OUT_DIR`, so the build
    /// script (which reruns on every edit of `src`) probes once per setup.
    fn links_with(&self, arg: &str) -> bool {
        let mut key = DefaultHasher::new();
        (
            &self.rustc,
            &self.target,
            &self.linker,
            &self.rustflags,
            arg,
        )
            .hash(&mut key);
        let answer = self.dir.join(format!("link-probe-{:016x}", key.finish()));
        if let Ok(kept) = std::fs::read_to_string(&answer) {
            return kept == "yes";
        }
        let takes = self.probe(arg);
        let _ = std::fs::write(&answer, if takes { "yes" } else { "no" });
        takes
    }

    fn probe(&self, arg: &str) -> bool {
        let source = self.dir.join("link-probe.rs");
        if std::fs::write(&source, "fn main() {}\n").is_err() {
            return false;
        }
        let mut rustc = Command::new(&self.rustc);
        rustc
            .arg(&source)
            .args(["--crate-type=bin", "--target", &self.target])
            .arg("-o")
            .arg(self.dir.join("link-probe"))
            .args(&self.rustflags)
            .arg(format!("-Clink-arg={arg}"));
        if let Some(linker) = &self.linker {
            rustc.arg(format!("-Clinker={linker}"));
        }
        rustc
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}
