//! Template file names and the image names they turn into.
//!
//! Proxmox names container templates `<name>_<version>_<arch>.tar.<ext>`.
//! The kubelet only passes image names that parse as docker references, so
//! a template is named `pve-template.local/<storage>/<name>:<version>`; the
//! host part is never contacted, it only marks the name as ours. The one
//! function here maps a file name to its image name both when an import
//! names its result and when a kubelet name is looked up in a storage
//! directory, so the two directions cannot disagree.

use std::path::{Path, PathBuf};

use super::error::{Ctx, ImportError};
use crate::image::registry::platform::Platform;

/// Host part of template image names.
pub(crate) const REGISTRY: &str = "pve-template.local";
/// Stands in for the storage in names of templates imported by path.
pub(crate) const FILE_STORAGE: &str = "file";
/// Tag of templates whose file name carries no version.
const DEFAULT_VERSION: &str = "latest";
/// Template extensions, best first: when one template exists in several
/// compressions, zstd decodes fastest.
pub(super) const EXTENSIONS: [&str; 3] = [".tar.zst", ".tar.xz", ".tar.gz"];
/// Docker's limit on tag length.
const MAX_TAG_LEN: usize = 128;

/// What a template file name says about its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TemplateName {
    /// A valid repository path component.
    pub name: String,
    /// A valid tag.
    pub version: String,
    /// OCI architecture, when the file name carries one we know.
    pub arch: Option<&'static str>,
    /// Index into [`EXTENSIONS`].
    pub ext_rank: usize,
}

impl TemplateName {
    /// `None` when the file is not a template (unknown extension).
    pub(super) fn parse(file: &str) -> Option<TemplateName> {
        let (ext_rank, ext) = EXTENSIONS
            .iter()
            .enumerate()
            .find(|(_, ext)| file.ends_with(*ext))?;
        let stem = &file[..file.len() - ext.len()];
        let mut parts = stem.rsplitn(3, '_');
        let (name, version, arch) = match (parts.next(), parts.next(), parts.next()) {
            (Some(arch), Some(version), Some(name))
                if !arch.is_empty() && !version.is_empty() && !name.is_empty() =>
            {
                (name, version, oci_arch(arch))
            }
            _ => (stem, DEFAULT_VERSION, None),
        };
        Some(TemplateName {
            name: repository_component(name).unwrap_or_else(|| "template".to_owned()),
            version: tag(version),
            arch,
            ext_rank,
        })
    }

    /// The image name under which a template in `storage` is known.
    pub(super) fn image_name(&self, storage: &str) -> String {
        format!("{REGISTRY}/{storage}/{}:{}", self.name, self.version)
    }
}

/// Debian architecture names, as template file names use them, in OCI terms.
pub(super) fn oci_arch(debian: &str) -> Option<&'static str> {
    Some(match debian {
        "amd64" => "amd64",
        "arm64" => "arm64",
        "i386" => "386",
        "armhf" | "armel" => "arm",
        "ppc64el" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loong64" => "loong64",
        _ => return None,
    })
}

/// Turns free text into one docker repository path component: lowercase
/// alphanumerics joined by `.`, `_`, `__` or runs of `-`; any other
/// separator becomes `-`. `None` when nothing alphanumeric is left.
pub(super) fn repository_component(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut separator = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if !out.is_empty() && !separator.is_empty() {
                let keep = separator == "."
                    || separator == "_"
                    || separator == "__"
                    || separator.bytes().all(|b| b == b'-');
                out.push_str(if keep { &separator } else { "-" });
            }
            separator.clear();
            out.push(c.to_ascii_lowercase());
        } else {
            separator.push(if matches!(c, '.' | '_' | '-') { c } else { '-' });
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Turns free text into a docker tag (`[A-Za-z0-9_][A-Za-z0-9_.-]*`, at
/// most 128 characters); other characters become `_`.
pub(super) fn tag(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(['.', '-']) {
        out.insert(0, '_');
    }
    out.truncate(MAX_TAG_LEN);
    if out.is_empty() {
        DEFAULT_VERSION.to_owned()
    } else {
        out
    }
}

/// Finds the template file in `dir` whose image name is `name:version`.
/// Several files can qualify (other architectures, other compressions):
/// this host's architecture wins, then the better compression.
pub(super) fn find(
    ctx: Ctx<'_>,
    dir: &Path,
    name: &str,
    version: &str,
) -> Result<PathBuf, ImportError> {
    let host = Platform::host().architecture;
    let mut available = Vec::new();
    let mut best: Option<((bool, usize, String), String)> = None;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ctx.io("read directory", dir)(e)),
    };
    for entry in entries.into_iter().flatten() {
        let entry = entry.map_err(ctx.io("read directory", dir))?;
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        let Some(template) = TemplateName::parse(&file) else {
            continue;
        };
        if template.name == name && template.version == version {
            let foreign = template.arch.is_some_and(|a| a != host);
            let rank = (foreign, template.ext_rank, file.clone());
            if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                best = Some((rank, file));
            }
        } else {
            available.push(format!("{}:{}", template.name, template.version));
        }
    }
    match best {
        Some((_, file)) => Ok(dir.join(file)),
        None => {
            available.sort();
            available.dedup();
            Err(ImportError::TemplateNotFound {
                input: ctx.0.to_owned(),
                wanted: format!("{name}:{version}"),
                dir: dir.to_owned(),
                available: if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::reference::Reference;

    #[test]
    fn pve_file_names_split_into_name_version_and_arch() {
        let t = TemplateName::parse("debian-12-standard_12.7-1_amd64.tar.zst").unwrap();
        assert_eq!(t.name, "debian-12-standard");
        assert_eq!(t.version, "12.7-1");
        assert_eq!(t.arch, Some("amd64"));
        assert_eq!(
            t.image_name("local"),
            "pve-template.local/local/debian-12-standard:12.7-1"
        );

        let t = TemplateName::parse("alpine-3.19-default_20240207_arm64.tar.xz").unwrap();
        assert_eq!(
            (t.name.as_str(), t.version.as_str()),
            ("alpine-3.19-default", "20240207")
        );
        assert_eq!(t.arch, Some("arm64"));

        // Underscores inside the name stay with the name.
        let t = TemplateName::parse("my_base_1.0_i386.tar.gz").unwrap();
        assert_eq!((t.name.as_str(), t.version.as_str()), ("my_base", "1.0"));
        assert_eq!(t.arch, Some("386"));
    }

    #[test]
    fn other_file_names_use_the_stem_and_latest() {
        let t = TemplateName::parse("Custom Root.tar.gz").unwrap();
        assert_eq!(
            (t.name.as_str(), t.version.as_str()),
            ("custom-root", "latest")
        );
        assert_eq!(t.arch, None);
        assert!(TemplateName::parse("rootfs.tar.bz2").is_none());
        assert!(TemplateName::parse("rootfs.tar").is_none());
        assert_eq!(TemplateName::parse("+++.tar.gz").unwrap().name, "template");
    }

    #[test]
    fn derived_names_are_valid_references() {
        for file in [
            "debian-12-standard_12.7-1_amd64.tar.zst",
            "Weird..Name__x_v 1+2_amd64.tar.gz",
            "-lead_.v_armhf.tar.xz",
            "a---b___c.tar.gz",
        ] {
            let name = TemplateName::parse(file).unwrap().image_name("local");
            let parsed = Reference::parse(&name).unwrap_or_else(|e| panic!("{file}: {name}: {e}"));
            assert_eq!(parsed.to_string(), name, "{file}");
        }
    }

    #[test]
    fn find_prefers_this_host_then_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let host_deb = match Platform::host().architecture.as_str() {
            "amd64" => "amd64",
            "arm64" => "arm64",
            other => panic!("no test mapping for {other}"),
        };
        let foreign = if host_deb == "amd64" {
            "arm64"
        } else {
            "amd64"
        };
        for file in [
            format!("deb_1_{foreign}.tar.zst"),
            format!("deb_1_{host_deb}.tar.gz"),
            format!("deb_1_{host_deb}.tar.xz"),
            "deb_2_amd64.tar.gz".to_owned(),
            "notes.txt".to_owned(),
        ] {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        let found = find(Ctx("t"), dir.path(), "deb", "1").unwrap();
        assert_eq!(found, dir.path().join(format!("deb_1_{host_deb}.tar.xz")));

        let err = find(Ctx("t"), dir.path(), "deb", "3").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("deb:3") && msg.contains("deb:1, deb:2"),
            "{msg}"
        );

        let err = find(Ctx("t"), &dir.path().join("missing"), "deb", "1").unwrap_err();
        assert!(err.to_string().contains("available: none"), "{err}");
    }
}
