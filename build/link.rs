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
//! and a library search directory, [`static_libgcc`]: gcc's unwinder linked in
//! (what `gcc -static-libgcc` does) instead of loading `libgcc_s.so.1`, whose
//! loading and start-up code (it asks the CPU what it supports, each `cpuid` a trap
//! to the hypervisor on a virtual machine) cost every run 70–140 µs here. A probe
//! builds and runs a program that panics and catches it, so a toolchain where that
//! fails builds as before.
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

/// A directory to search for libraries first, holding `libgcc_s.a`: a link to
/// gcc's static unwinder `libgcc_eh.a`. rustc names the unwinder `-lgcc_s`; found
/// there first, the linker takes the archive. `None` (and nothing changes) when
/// cross-compiling, when the C library is linked statically anyway, when the C
/// compiler does not name the archive, or when the probe program does not run.
pub fn static_libgcc() -> Option<PathBuf> {
    let probe = Probe::from_env()?;
    let host = std::env::var("HOST").ok()?;
    if probe.target != host
        || !probe.target.ends_with("-linux-gnu")
        || probe.rustflags.iter().any(|f| f.contains("crt-static"))
    {
        return None;
    }
    let cc = probe.linker.clone().unwrap_or_else(|| "cc".to_string());
    let out = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let archive = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    if !archive.is_absolute() || !archive.is_file() {
        return None;
    }
    let dir = probe.dir.join("static-libgcc");
    let link = dir.join("libgcc_s.a");
    let _ = std::fs::remove_file(&link);
    std::fs::create_dir_all(&dir).ok()?;
    std::os::unix::fs::symlink(&archive, &link).ok()?;
    probe.unwinds_with(&dir).then_some(dir)
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
        self.kept("link-probe", arg, || {
            let source = self.dir.join("link-probe.rs");
            std::fs::write(&source, "fn main() {}\n").is_ok()
                && self
                    .rustc(&source, &self.dir.join("link-probe"))
                    .arg(format!("-Clink-arg={arg}"))
                    .status()
                    .is_ok_and(|s| s.success())
        })
    }

    /// Whether a program linked with `-L dir` first catches a panic (its unwinder
    /// works) and loads no `libgcc_s` (the archive was taken); kept as above.
    fn unwinds_with(&self, dir: &Path) -> bool {
        let archive = std::fs::read_link(dir.join("libgcc_s.a")).ok();
        self.kept("unwind-probe", archive, || {
            let source = self.dir.join("unwind-probe.rs");
            let binary = self.dir.join("unwind-probe");
            let program = "fn main() {\n    \
                std::panic::set_hook(Box::new(|_| {}));\n    \
                let caught = std::panic::catch_unwind(|| panic!(\"probe\")).is_err();\n    \
                let maps = std::fs::read_to_string(\"/proc/self/maps\").unwrap_or_default();\n    \
                if caught && !maps.contains(\"libgcc_s\") { print!(\"static\") }\n}\n";
            std::fs::write(&source, program).is_ok()
                && self
                    .rustc(&source, &binary)
                    .arg("-L")
                    .arg(format!("native={}", dir.display()))
                    .status()
                    .is_ok_and(|s| s.success())
                && Command::new(&binary)
                    .stderr(Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success() && o.stdout == b"static")
        })
    }

    /// `answer()`, kept in `OUT_DIR` under a key of this setup and `what`.
    fn kept(&self, name: &str, what: impl Hash, answer: impl FnOnce() -> bool) -> bool {
        let mut key = DefaultHasher::new();
        (
            &self.rustc,
            &self.target,
            &self.linker,
            &self.rustflags,
            what,
        )
            .hash(&mut key);
        let file = self.dir.join(format!("{name}-{:016x}", key.finish()));
        if let Ok(kept) = std::fs::read_to_string(&file) {
            return kept == "yes";
        }
        let yes = answer();
        let _ = std::fs::write(&file, if yes { "yes" } else { "no" });
        yes
    }

    /// rustc building `source` into `out` the way cargo builds ours, quiet.
    fn rustc(&self, source: &Path, out: &Path) -> Command {
        let mut rustc = Command::new(&self.rustc);
        rustc
            .arg(source)
            .args(["--crate-type=bin", "--target", &self.target])
            .arg("-o")
            .arg(out)
            .args(&self.rustflags)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(linker) = &self.linker {
            rustc.arg(format!("-Clinker={linker}"));
        }
        rustc
    }
}
