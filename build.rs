//! Compiles the CRI v1 protocol in `proto/` and records the git revision.

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    // Rebuild when HEAD moves. `--git-path` finds the files in a linked
    // worktree too, where `.git` is a file and a fixed path would not exist
    // (and a missing path makes cargo rerun this script on every build).
    for path in git_paths() {
        println!("cargo:rerun-if-changed={path}");
    }

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;

    let hash = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PVECRI_GIT_HASH={hash}");
    Ok(())
}

/// HEAD and the branch ref it names, as paths git itself reports.
fn git_paths() -> Vec<String> {
    let mut paths: Vec<String> = git(&["rev-parse", "--git-path", "HEAD"])
        .into_iter()
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    paths
        .into_iter()
        .filter(|p| std::path::Path::new(p).exists())
        .collect()
}

/// The trimmed output of a successful, non-empty `git` command.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
