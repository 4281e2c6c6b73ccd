//! Records the git commit the server is built from, for `aorta_build_info`
//! (`/metrics`): `AORTA_GIT` when set (e.g. a container build without the
//! repository's `.git`), else `git rev-parse --short=12 HEAD`, else
//! `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=AORTA_GIT");
    let commit = match std::env::var("AORTA_GIT") {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => {
            // Rebuild when HEAD moves: the HEAD file, the branch it names
            // and the packed refs (worktrees have their own HEAD).
            for p in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(path) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={path}");
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    // Only characters a label value and a log line carry plainly.
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+'))
        .take(64)
        .collect();
    let commit = if commit.is_empty() {
        "unknown".to_owned()
    } else {
        commit
    };
    println!("cargo:rustc-env=AORTA_GIT_COMMIT={commit}");
}
