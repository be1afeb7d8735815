//! Whether the kernel can shape pods as their bandwidth annotations ask:
//! the TBF and ingress qdiscs, the u32 classifier, the mirred action and
//! ifb devices, which built-in mode's shaping and the CNI `bandwidth`
//! plugin both use. Read from the kernel's build config
//! (`/boot/config-<release>`, else `/proc/config.gz`), or without one from
//! the module lists. Only pods with the annotations need them, so a
//! missing feature is a warning; the check is left out in CNI mode when no
//! plugin declares the `bandwidth` capability.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::Check;
use crate::config::{Config, NetworkMode};
use crate::network::cni;

/// Kernel config option and module name of each feature.
const FEATURES: &[(&str, &str)] = &[
    ("NET_SCH_TBF", "sch_tbf"),
    ("NET_SCH_INGRESS", "sch_ingress"),
    ("NET_CLS_U32", "cls_u32"),
    ("NET_ACT_MIRRED", "act_mirred"),
    ("IFB", "ifb"),
];

/// Where the kernel's features were read.
#[derive(Debug)]
enum Source {
    /// A kernel build config: where, and its text.
    Config(String, String),
    /// No config: `modules.builtin` and `modules.dep` of the running
    /// kernel (empty when unreadable) and the names under `/sys/module`.
    Modules {
        builtin: String,
        dep: String,
        loaded: Vec<String>,
    },
}

pub(super) fn checks(config: &Config) -> Vec<Check> {
    let net = &config.network;
    let shaped = match net.mode {
        NetworkMode::Builtin => true,
        NetworkMode::Cni => cni::load(&net.cni_conf_dir).is_ok_and(|conf| {
            conf.plugins
                .iter()
                .any(|p| p["capabilities"]["bandwidth"] == true)
        }),
    };
    if !shaped {
        return Vec::new();
    }
    vec![verdict(&source())]
}

fn source() -> Source {
    let release = crate::node::kernel::release();
    let release = release.as_str();
    let boot = PathBuf::from(format!("/boot/config-{release}"));
    if let Ok(text) = std::fs::read_to_string(&boot) {
        return Source::Config(boot.display().to_string(), text);
    }
    if let Some(text) = gunzip(Path::new("/proc/config.gz")) {
        return Source::Config("/proc/config.gz".to_owned(), text);
    }
    let dir = PathBuf::from("/lib/modules").join(release);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    Source::Modules {
        builtin: read("modules.builtin"),
        dep: read("modules.dep"),
        loaded: FEATURES
            .iter()
            .map(|(_, module)| *module)
            .filter(|m| Path::new("/sys/module").join(m).is_dir())
            .map(str::to_owned)
            .collect(),
    }
}

fn gunzip(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Whether the feature is there: `None` when the source cannot tell.
fn present(source: &Source, option: &str, module: &str) -> Option<bool> {
    match source {
        Source::Config(_, text) => {
            let key = format!("CONFIG_{option}=");
            Some(text.lines().any(|l| {
                l.strip_prefix(&key)
                    .is_some_and(|v| v.trim() == "y" || v.trim() == "m")
            }))
        }
        Source::Modules {
            builtin,
            dep,
            loaded,
        } => {
            if loaded.iter().any(|m| m == module) {
                return Some(true);
            }
            if builtin.is_empty() && dep.is_empty() {
                return None;
            }
            // Entries are paths such as `kernel/net/sched/sch_tbf.ko.xz`,
            // `modules.dep` with a `:` and the dependencies after it.
            let listed = |text: &str| {
                text.lines().any(|l| {
                    let path = l.split(':').next().unwrap_or_default();
                    let file = path.rsplit('/').next().unwrap_or_default();
                    file.split(".ko").next().map(|n| n.replace('-', "_")) == Some(module.to_owned())
                })
            };
            Some(listed(builtin) || listed(dep))
        }
    }
}

fn verdict(source: &Source) -> Check {
    let from = match source {
        Source::Config(path, _) => path.clone(),
        Source::Modules { .. } => "the module lists".to_owned(),
    };
    let mut missing = Vec::new();
    let mut unknown = Vec::new();
    for (option, module) in FEATURES {
        match present(source, option, module) {
            Some(true) => {}
            Some(false) => missing.push(format!("{module} (CONFIG_{option})")),
            None => unknown.push(*module),
        }
    }
    if !missing.is_empty() {
        return Check::warn(
            "bandwidth",
            format!(
                "the kernel lacks {} ({from}): pods with kubernetes.io/ingress-bandwidth or \
                 egress-bandwidth annotations fail to start; others are unaffected",
                missing.join(", ")
            ),
            "use a kernel with these qdiscs, classifier, action and ifb (the Proxmox and Debian \
             kernels have them as modules), or do not set the bandwidth annotations",
        );
    }
    if !unknown.is_empty() {
        return Check::warn(
            "bandwidth",
            format!(
                "cannot tell whether the kernel has {}: no kernel config in /boot or \
                 /proc/config.gz, and no module lists",
                unknown.join(", ")
            ),
            "install the kernel's config (/boot/config-<release>) or its modules, \
             or try a pod with a kubernetes.io/ingress-bandwidth annotation",
        );
    }
    Check::ok(
        "bandwidth",
        format!("the kernel has tbf, ingress, u32, mirred and ifb ({from})"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    const FULL: &str = "CONFIG_NET_SCH_TBF=m\nCONFIG_NET_SCH_INGRESS=m\nCONFIG_NET_CLS_U32=y\n\
                        CONFIG_NET_ACT_MIRRED=m\nCONFIG_IFB=m\n";

    #[test]
    fn every_feature_must_be_in_the_kernel_config() {
        let ok = verdict(&Source::Config("/boot/config-6.8".into(), FULL.into()));
        assert_eq!(ok.level, Level::Ok, "{ok:?}");
        assert!(ok.detail.contains("/boot/config-6.8"), "{ok:?}");
        let text = FULL.replace("CONFIG_IFB=m", "# CONFIG_IFB is not set");
        let no_ifb = verdict(&Source::Config("/proc/config.gz".into(), text));
        assert_eq!(no_ifb.level, Level::Warn);
        assert!(
            no_ifb.detail.contains("ifb (CONFIG_IFB)") && !no_ifb.detail.contains("sch_tbf"),
            "{no_ifb:?}"
        );
        // A prefix of another option does not count.
        let text = FULL.replace("CONFIG_NET_SCH_TBF=m", "CONFIG_NET_SCH_TBF_EXTRA=y");
        let no_tbf = verdict(&Source::Config("c".into(), text));
        assert!(no_tbf.detail.contains("sch_tbf"), "{no_tbf:?}");
    }

    #[test]
    fn without_a_config_the_module_lists_decide_or_the_line_says_it_cannot_tell() {
        let modules = Source::Modules {
            builtin: "kernel/net/sched/cls_u32.ko\n".into(),
            dep: "kernel/net/sched/sch_tbf.ko.xz:\nkernel/net/sched/sch_ingress.ko.xz:\n\
                  kernel/net/sched/act_mirred.ko.xz: kernel/net/sched/act_foo.ko.xz\n"
                .into(),
            loaded: vec!["ifb".into()],
        };
        assert_eq!(verdict(&modules).level, Level::Ok);
        let missing = Source::Modules {
            builtin: "kernel/net/sched/cls_u32.ko\n".into(),
            dep: "kernel/net/sched/act_mirred.ko.xz:\n".into(),
            loaded: vec![],
        };
        let line = verdict(&missing);
        assert_eq!(line.level, Level::Warn);
        assert!(
            line.detail.contains("sch_tbf") && line.detail.contains("ifb"),
            "{line:?}"
        );
        let blind = Source::Modules {
            builtin: String::new(),
            dep: String::new(),
            loaded: vec!["ifb".into()],
        };
        let line = verdict(&blind);
        assert_eq!(line.level, Level::Warn);
        assert!(
            line.detail.starts_with("cannot tell") && !line.detail.contains("ifb"),
            "{line:?}"
        );
    }
}
