//! `pvecri generate man|completions DIR`: man pages and shell completions
//! written from the CLI's own clap definitions, for the Debian package
//! (scripts/build-deb.sh). Hidden; needs no root.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Subcommand)]
pub(super) enum Generate {
    /// One man page per visible subcommand, plus pvecri.1.
    Man { dir: PathBuf },
    /// bash, zsh and fish completions (pvecri.bash, _pvecri, pvecri.fish).
    Completions { dir: PathBuf },
}

pub(super) fn run(what: Generate) -> anyhow::Result<ExitCode> {
    let cmd = super::Cli::command();
    match what {
        Generate::Man { dir } => man_pages(&cmd, &dir)?,
        Generate::Completions { dir } => completions(cmd, &dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn man_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    write_man(cmd.clone(), &dir.join("pvecri.1"))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // The page of `pvecri stats` is pvecri-stats(1), titled so.
        let name = format!("pvecri-{}", sub.get_name());
        let page = sub.clone().name(name.clone());
        write_man(page, &dir.join(format!("{name}.1")))?;
    }
    Ok(())
}

fn write_man(cmd: clap::Command, path: &Path) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .with_context(|| format!("render {}", path.display()))?;
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

fn completions(mut cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "pvecri", dir)
            .with_context(|| format!("write {shell} completions into {}", dir.display()))?;
        tracing::debug!(path = %path.display(), "completions written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_cover_the_visible_verbs() {
        let dir = tempfile::tempdir().unwrap();
        run(Generate::Man {
            dir: dir.path().join("man"),
        })
        .unwrap();
        let man = |n: &str| std::fs::read_to_string(dir.path().join("man").join(n)).unwrap();
        assert!(man("pvecri.1").contains("pvecri"));
        assert!(man("pvecri-doctor.1").contains("doctor"));
        // Internal verbs get no page.
        assert!(!dir.path().join("man/pvecri-monitor.1").exists());

        run(Generate::Completions {
            dir: dir.path().join("c"),
        })
        .unwrap();
        for f in ["pvecri.bash", "_pvecri", "pvecri.fish"] {
            let text = std::fs::read_to_string(dir.path().join("c").join(f)).unwrap();
            assert!(text.contains("doctor"), "{f}");
        }
    }
}
