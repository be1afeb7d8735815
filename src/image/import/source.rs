//! Recognising image names that point at local files instead of a registry.
//!
//! Parsing is purely lexical: no file is opened here, so the CRI layer can
//! decide between a registry pull and an import without touching the disk.
//! Everything that becomes part of a path is checked here, though: the
//! kubelet form reaches us from pod specs, and a pod author must not be
//! able to read files outside the storages' template directories.
//! The `pve-template:`, `oci-archive:` and `oci-layout:` forms are not
//! docker references, so only an administrator using crictl can send them.

use std::path::{Component, Path, PathBuf};

use super::error::{Ctx, ImportError};
use super::template_name::{self, EXTENSIONS};
use crate::image::reference::Reference;

const PVE_TEMPLATE: &str = "pve-template:";
const OCI_ARCHIVE: &str = "oci-archive:";
const OCI_LAYOUT: &str = "oci-layout:";
/// PVE volume IDs of templates are `<storage>:vztmpl/<file>`.
const VZTMPL: &str = "vztmpl/";

/// A local image source, as named by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalSource {
    /// The name exactly as given.
    pub input: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// `pve-template:<storage>:vztmpl/<file>`: a file in a storage's
    /// template directory, by its PVE volume ID.
    StorageFile { storage: String, file: String },
    /// `pve-template.local/<storage>/<name>:<version>`: a template in a
    /// storage by name and version, whatever its architecture and
    /// compression.
    StorageTemplate {
        storage: String,
        name: String,
        version: String,
    },
    /// `pve-template:/abs/path/<file>.tar.{gz,xz,zst}`.
    TemplatePath(PathBuf),
    /// `oci-archive:/abs/path.tar[:name]`: an OCI image layout packed in a
    /// tar file.
    OciArchive { path: PathBuf, name: Option<String> },
    /// `oci-layout:/abs/dir[:name]`: an OCI image layout directory.
    OciLayout { dir: PathBuf, name: Option<String> },
}

impl LocalSource {
    /// Whether importing needs to know the node's PVE storages.
    pub(crate) fn uses_storages(&self) -> bool {
        matches!(
            self.kind,
            SourceKind::StorageFile { .. } | SourceKind::StorageTemplate { .. }
        )
    }
}

/// `Ok(None)` when `image` is not a local source (so: a registry image);
/// an error when it is one but malformed or unsafe.
pub(crate) fn parse(image: &str) -> Result<Option<LocalSource>, ImportError> {
    let ctx = Ctx(image);
    let kind = if let Some(rest) = image.strip_prefix(PVE_TEMPLATE) {
        pve_template(ctx, rest)?
    } else if image.starts_with(&format!("{}/", template_name::REGISTRY)) {
        template_reference(ctx)?
    } else if let Some(rest) = image.strip_prefix(OCI_ARCHIVE) {
        let (path, name) = path_and_name(ctx, rest)?;
        SourceKind::OciArchive { path, name }
    } else if let Some(rest) = image.strip_prefix(OCI_LAYOUT) {
        let (dir, name) = path_and_name(ctx, rest)?;
        SourceKind::OciLayout { dir, name }
    } else {
        return Ok(None);
    };
    Ok(Some(LocalSource {
        input: image.to_owned(),
        kind,
    }))
}

fn pve_template(ctx: Ctx<'_>, rest: &str) -> Result<SourceKind, ImportError> {
    if rest.starts_with('/') {
        let path = absolute_path(ctx, rest)?;
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
        check_extension(ctx, file)?;
        return Ok(SourceKind::TemplatePath(path));
    }
    let Some((storage, volume)) = rest.split_once(':') else {
        return Err(ctx.invalid(
            "expected pve-template:<storage>:vztmpl/<file> or pve-template:/<absolute path>",
        ));
    };
    check_storage(ctx, storage)?;
    let Some(file) = volume.strip_prefix(VZTMPL) else {
        return Err(ctx.invalid(format!(
            "volume {volume:?} is not a container template (expected {VZTMPL}<file>)"
        )));
    };
    if file.is_empty() || file.contains(['/', '\0']) || file.starts_with('.') || file.contains("..")
    {
        return Err(ctx.invalid(format!(
            "template file name {file:?} must be a plain file name"
        )));
    }
    check_extension(ctx, file)?;
    Ok(SourceKind::StorageFile {
        storage: storage.to_owned(),
        file: file.to_owned(),
    })
}

/// The kubelet-compatible form, a docker reference under our pseudo host.
fn template_reference(ctx: Ctx<'_>) -> Result<SourceKind, ImportError> {
    let reference = Reference::parse(ctx.0).map_err(|source| ImportError::Reference {
        input: ctx.0.to_owned(),
        source,
    })?;
    if reference.digest.is_some() {
        return Err(ctx.invalid(
            "templates are named by version; a digest cannot select one (use the image id instead)",
        ));
    }
    let Some((storage, name)) = reference.repository.split_once('/') else {
        return Err(ctx.invalid(format!(
            "expected {}/<storage>/<template>:<version>",
            template_name::REGISTRY
        )));
    };
    if name.contains('/') {
        return Err(ctx.invalid(format!(
            "expected {}/<storage>/<template>:<version>, got more path components",
            template_name::REGISTRY
        )));
    }
    check_storage(ctx, storage)?;
    Ok(SourceKind::StorageTemplate {
        storage: storage.to_owned(),
        name: name.to_owned(),
        version: reference.tag.unwrap_or_default(),
    })
}

/// `<absolute path>[:<name>]`. Like skopeo, the first colon ends the path,
/// so the name itself may contain colons (`busybox:1.36`).
fn path_and_name(ctx: Ctx<'_>, rest: &str) -> Result<(PathBuf, Option<String>), ImportError> {
    let (path, name) = match rest.split_once(':') {
        Some((_, "")) => return Err(ctx.invalid("empty image name after ':'")),
        Some((path, name)) => (path, Some(name.to_owned())),
        None => (rest, None),
    };
    Ok((absolute_path(ctx, path)?, name))
}

/// An absolute path without `..`: the path is used as given, so it must
/// say plainly which file it means.
fn absolute_path(ctx: Ctx<'_>, path: &str) -> Result<PathBuf, ImportError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(ctx.invalid(format!("path {path:?} is not absolute")));
    }
    if p.components().any(|c| c == Component::ParentDir) || path.contains('\0') {
        return Err(ctx.invalid(format!("path {path:?} must not contain '..'")));
    }
    if p.file_name().is_none() {
        return Err(ctx.invalid(format!("path {path:?} names no file")));
    }
    Ok(p.to_owned())
}

fn check_extension(ctx: Ctx<'_>, file: &str) -> Result<(), ImportError> {
    if EXTENSIONS
        .iter()
        .any(|ext| file.ends_with(ext) && file.len() > ext.len())
    {
        Ok(())
    } else {
        Err(ctx.invalid(format!(
            "template {file:?} is not a {} file",
            EXTENSIONS.join(", ")
        )))
    }
}

/// PVE's storage ID syntax, which also keeps the ID a safe path component.
fn check_storage(ctx: Ctx<'_>, storage: &str) -> Result<(), ImportError> {
    let bytes = storage.as_bytes();
    let ok = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
        && !storage.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ctx.invalid(format!("{storage:?} is not a valid storage id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(image: &str) -> SourceKind {
        parse(image)
            .unwrap_or_else(|e| panic!("{image}: {e}"))
            .unwrap_or_else(|| panic!("{image}: not recognised"))
            .kind
    }

    /// The error and its causes, as a log line would show them.
    fn refused(image: &str, needle: &str) {
        let err = parse(image).expect_err(image);
        let top = err.to_string();
        assert!(top.contains(image), "error does not name the input: {top}");
        let mut text = top;
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            text = format!("{text}: {c}");
            cause = c.source();
        }
        assert!(text.contains(needle), "{image}: {text}");
    }

    #[test]
    fn registry_images_are_not_local() {
        for image in [
            "busybox",
            "docker.io/library/debian:12",
            "pve-template.example/x/y:1",
            "localhost:5000/pve-template:1",
        ] {
            assert_eq!(parse(image).unwrap(), None, "{image}");
        }
    }

    #[test]
    fn pve_volume_ids_and_paths() {
        assert_eq!(
            kind("pve-template:local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"),
            SourceKind::StorageFile {
                storage: "local".into(),
                file: "debian-12-standard_12.7-1_amd64.tar.zst".into()
            }
        );
        assert_eq!(
            kind("pve-template:/srv/t/alpine_3.20_amd64.tar.xz"),
            SourceKind::TemplatePath("/srv/t/alpine_3.20_amd64.tar.xz".into())
        );
        let source = parse("pve-template:nas:vztmpl/x.tar.gz").unwrap().unwrap();
        assert!(source.uses_storages());
        assert_eq!(source.input, "pve-template:nas:vztmpl/x.tar.gz");
    }

    #[test]
    fn kubelet_form() {
        assert_eq!(
            kind("pve-template.local/local/debian-12-standard:12.7-1"),
            SourceKind::StorageTemplate {
                storage: "local".into(),
                name: "debian-12-standard".into(),
                version: "12.7-1".into()
            }
        );
        assert_eq!(
            kind("pve-template.local/nas/alpine"),
            SourceKind::StorageTemplate {
                storage: "nas".into(),
                name: "alpine".into(),
                version: "latest".into()
            }
        );
        refused("pve-template.local/debian:12", "<storage>/<template>");
        refused("pve-template.local/a/b/c:1", "more path components");
        refused("pve-template.local/Local/x:1", "lowercase");
        let digest = format!("pve-template.local/local/x@sha256:{}", "a".repeat(64));
        refused(&digest, "digest");
    }

    #[test]
    fn oci_forms() {
        assert_eq!(
            kind("oci-archive:/tmp/img.tar"),
            SourceKind::OciArchive {
                path: "/tmp/img.tar".into(),
                name: None
            }
        );
        assert_eq!(
            kind("oci-archive:/tmp/img.tar:busybox:1.36"),
            SourceKind::OciArchive {
                path: "/tmp/img.tar".into(),
                name: Some("busybox:1.36".into())
            }
        );
        assert_eq!(
            kind("oci-layout:/srv/layout:v2"),
            SourceKind::OciLayout {
                dir: "/srv/layout".into(),
                name: Some("v2".into())
            }
        );
        assert!(!parse("oci-layout:/srv/layout")
            .unwrap()
            .unwrap()
            .uses_storages());
        refused("oci-archive:img.tar", "not absolute");
        refused("oci-layout:/srv/../etc:x", "'..'");
        refused("oci-archive:/tmp/img.tar:", "empty image name");
        refused("oci-layout:/", "names no file");
    }

    #[test]
    fn traversal_and_junk_are_refused() {
        refused(
            "pve-template:local:vztmpl/../../etc/shadow.tar.gz",
            "plain file name",
        );
        refused("pve-template:local:vztmpl/sub/x.tar.gz", "plain file name");
        refused("pve-template:local:vztmpl/..tar.gz", "plain file name");
        refused(
            "pve-template:local:vztmpl/.hidden.tar.gz",
            "plain file name",
        );
        refused("pve-template:local:vztmpl/", "plain file name");
        refused("pve-template:../x:vztmpl/a.tar.gz", "storage id");
        refused("pve-template:Local:vztmpl/a.tar.gz", "storage id");
        refused("pve-template:a/b:vztmpl/a.tar.gz", "storage id");
        refused("pve-template:local:iso/a.iso", "not a container template");
        refused(
            "pve-template:local:vztmpl/a.tar.bz2",
            "is not a .tar.zst, .tar.xz, .tar.gz file",
        );
        refused("pve-template:local:vztmpl/.tar.gz", "plain file name");
        refused("pve-template:local", "expected pve-template:<storage>");
        refused(
            "pve-template:relative/a.tar.gz",
            "expected pve-template:<storage>",
        );
        refused("pve-template:/var/lib/vz/../../etc/a.tar.gz", "'..'");
        refused("pve-template:/var/lib/vz/a.iso", "is not a");
        refused("pve-template:/var/lib/vz/.tar.gz", "is not a");
    }
}
