//! Checkpointing: whether a working CRIU is installed. Only a warning when
//! not: every other CRI call works without it.

use super::Check;
use crate::checkpoint::criu::{self, Criu, CriuUnusable};
use crate::config::Config;

pub(super) fn checks(config: &Config) -> Vec<Check> {
    vec![criu_check(&criu::probe(config.criu_path.as_deref()))]
}

fn criu_check(probe: &Result<Criu, CriuUnusable>) -> Check {
    const NAME: &str = "criu";
    const FIX: &str = "install criu >= 4.1 (kernels >= 6.13 need it; Debian 12's 3.17 \
                       works only on older kernels), then run `criu check`";
    match probe {
        Ok(c) => Check::ok(
            NAME,
            format!(
                "criu {} at {} passes `criu check`",
                c.version,
                c.path.display()
            ),
        ),
        Err(CriuUnusable::NotFound) => Check::warn(
            NAME,
            "criu is not installed: CheckpointContainer is refused",
            FIX,
        ),
        Err(CriuUnusable::CannotRun { path, message }) => Check::warn(
            NAME,
            format!(
                "cannot run {}: {message}: CheckpointContainer is refused",
                path.display()
            ),
            FIX,
        ),
        Err(CriuUnusable::CheckFailed {
            version,
            first_error,
            ..
        }) => Check::warn(
            NAME,
            format!(
                "criu {version} fails `criu check` ({first_error}): CheckpointContainer is refused"
            ),
            FIX,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::doctor::Level;

    #[test]
    fn an_unusable_criu_warns_with_its_version_and_first_error() {
        let c = criu_check(&Err(CriuUnusable::CheckFailed {
            version: "3.17.1".into(),
            first_error: "vdso: Unexpected rt vDSO area bounds".into(),
            output: String::new(),
        }));
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.contains("criu 3.17.1"), "{}", c.detail);
        assert!(c.detail.contains("vdso: Unexpected rt vDSO area bounds"));
        assert!(c.fix.as_deref().unwrap().contains(">= 4.1"));
        assert_eq!(criu_check(&Err(CriuUnusable::NotFound)).level, Level::Warn);
        let ok = criu_check(&Ok(Criu {
            path: "/usr/sbin/criu".into(),
            version: "4.2".into(),
        }));
        assert_eq!(ok.level, Level::Ok);
    }
}
