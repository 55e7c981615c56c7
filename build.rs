//! Records the git revision the binary is built from as `CATALYST_CUTOVER_REVISION`, which
//! `--version` prints: `$CATALYST_CUTOVER_REVISION` when set (a build from a source archive,
//! or `scripts/image` marking a dirty tree), else `git rev-parse HEAD` of this repository,
//! else `unknown`.

use std::path::Path;
use std::process::Command;

const VAR: &str = "CATALYST_CUTOVER_REVISION";

fn main() {
    println!("cargo:rerun-if-env-changed={VAR}");
    let revision = std::env::var(VAR)
        .ok()
        .filter(|revision| !revision.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env={VAR}={revision}");
}

/// The commit checked out, if this crate is the top of a git work tree (not a source
/// archive unpacked inside some other repository), with the files to watch for a new one.
fn git_revision() -> Option<String> {
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if !same_dir(Path::new(&top), Path::new(&manifest_dir)) {
        return None;
    }
    let revision = git(&["rev-parse", "HEAD"])?;
    // HEAD moves on a checkout; the branch it names moves on a commit (a loose ref, or
    // packed-refs after a gc). `--git-path` resolves both inside linked worktrees too.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(revision)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The trimmed output of a successful git command; `None` if git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
