//! Sets `BACKSTOP_VERSION` for `backstop --version` (see `build/version.rs`) and
//! the link arguments and the library search directory that make the binary cheaper
//! to start (see `build/link.rs`).

#[path = "build/link.rs"]
mod link;
#[path = "build/version.rs"]
mod version;

fn main() {
    let dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let package = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    let commit = version::commit_of(&dir);
    println!(
        "cargo:rustc-env=BACKSTOP_VERSION={}",
        version::describe(&package, commit.as_ref())
    );
    for arg in link::args(&dir) {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    if let Some(search) = link::static_libgcc() {
        println!("cargo:rustc-link-search=native={}", search.display());
    }
    // Another commit, branch, or staged change; `src` for a dirty tree's edits.
    for path in version::watched(&dir) {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/version.rs");
    println!("cargo:rerun-if-changed=build/link.rs");
    println!("cargo:rerun-if-changed=build/hot-symbols.txt");
}
