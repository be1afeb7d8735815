//! Image references, normalised the way docker and containerd do it.
//!
//! Kubelet hands us whatever the pod spec says (`busybox`, `nginx:1.27`,
//! `ghcr.io/org/app@sha256:…`). Image records must be keyed by one canonical
//! spelling, otherwise `busybox` and `docker.io/library/busybox:latest` would
//! be two images. So a short name gets the default registry (`docker.io`),
//! official Docker Hub images get the `library/` namespace, and a reference
//! without tag or digest gets `latest`. A digest, when present, decides what
//! is pulled; a tag next to it is kept only so the name still reads well.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Registry assumed when a reference names none.
pub(crate) const DEFAULT_REGISTRY: &str = "docker.io";
/// Tag assumed when a reference has neither tag nor digest.
pub(crate) const DEFAULT_TAG: &str = "latest";

/// Old spelling of Docker Hub that docker still accepts on input.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// The host Docker Hub's registry API is served from; a reference may name
/// it directly.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// HTTPS's port: `host:443` and `host` are the same registry.
const DEFAULT_PORT_SUFFIX: &str = ":443";
/// Namespace of Docker Hub's single-component ("official") repositories.
pub(crate) const OFFICIAL_NAMESPACE: &str = "library";
/// Docker's limit on `registry/repository`; registries reject longer names.
const MAX_NAME_LEN: usize = 255;
/// Docker's tag grammar allows at most 128 characters.
const MAX_TAG_LEN: usize = 128;
const SHA256_PREFIX: &str = "sha256:";
const SHA256_HEX_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("invalid image reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid image reference {input:?}: bad repository path component {component:?}")]
    Repository { input: String, component: String },
    #[error("invalid image reference {input:?}: bad registry host {registry:?}")]
    Registry { input: String, registry: String },
    #[error("invalid image reference {input:?}: bad tag {tag:?}")]
    Tag { input: String, tag: String },
    #[error("invalid image reference {input:?}: bad digest {digest:?}: {reason}")]
    Digest {
        input: String,
        digest: String,
        reason: &'static str,
    },
    #[error(
        "invalid image reference {input:?}: name is {len} characters, the limit is {MAX_NAME_LEN}"
    )]
    TooLong { input: String, len: usize },
    // A bare 64-hex string is an image ID, never a repository name; docker
    // refuses it for the same reason, and the image service resolves IDs
    // before it gets here.
    #[error("invalid image reference {input:?}: a 64-character hex string is an image ID, not a repository name")]
    ImageId { input: String },
}

/// Whether `s` is an image ID: 64 hex digits, with or without `sha256:`.
pub(crate) fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Reference {
    /// Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path within the registry, e.g. `library/busybox`.
    pub repository: String,
    /// `None` only when the reference carries a digest and no tag.
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`; when set, this is what gets pulled.
    pub digest: Option<String>,
}

impl Reference {
    pub(crate) fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.len() == SHA256_HEX_LEN && is_lower_hex(input) {
            return Err(ReferenceError::ImageId {
                input: input.to_owned(),
            });
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(input, digest)?)),
            None => (input, None),
        };

        // A colon after the last slash starts the tag; one before it belongs
        // to a registry port (`127.0.0.1:5000/x`).
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(input, tag)?;
        }

        let (registry, path) = split_registry(name);
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        check_registry(input, registry)?;
        check_repository(input, path)?;

        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_owned()
        };
        let len = registry.len() + 1 + repository.len();
        if len > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong {
                input: input.to_owned(),
                len,
            });
        }

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` with the registry spelled one way only (see
    /// [`canonical_registry`]), Docker Hub's official images under
    /// `library/` whatever the registry was called: the name the
    /// signature policy judges. `registry` keeps the spelling the pod
    /// used, which still decides where the image is fetched from, so two
    /// spellings of one registry must not get two verdicts.
    pub(crate) fn canonical_name(&self) -> String {
        let registry = canonical_registry(&self.registry);
        if registry == DEFAULT_REGISTRY && !self.repository.contains('/') {
            format!("{registry}/{OFFICIAL_NAMESPACE}/{}", self.repository)
        } else {
            format!("{registry}/{}", self.repository)
        }
    }

    /// `registry/repository:tag`, what CRI reports in `repo_tags`.
    pub(crate) fn repo_tag(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}/{}:{tag}", self.registry, self.repository))
    }

    /// `registry/repository@digest`, what CRI reports in `repo_digests`.
    pub(crate) fn repo_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// One spelling per registry: host names are case-insensitive, `:443` is
/// the port HTTPS implies, and Docker Hub answers to `docker.io`,
/// `index.docker.io` and `registry-1.docker.io` alike.
pub(crate) fn canonical_registry(registry: &str) -> String {
    let lower = registry.to_ascii_lowercase();
    let host = lower.strip_suffix(DEFAULT_PORT_SUFFIX).unwrap_or(&lower);
    match host {
        LEGACY_DEFAULT_REGISTRY | DOCKER_HUB_API_HOST => DEFAULT_REGISTRY.to_owned(),
        _ => host.to_owned(),
    }
}

/// Splits `name` into registry and repository path. The first component is
/// a registry only if it looks like a host (has a dot or a port, or is
/// `localhost`); otherwise `library/busybox` would be read as host `library`.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn parse_digest(input: &str, digest: &str) -> Result<String, ReferenceError> {
    let bad = |reason| ReferenceError::Digest {
        input: input.to_owned(),
        digest: digest.to_owned(),
        reason,
    };
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(bad("expected <algorithm>:<hex>"));
    };
    if algorithm != &SHA256_PREFIX[..SHA256_PREFIX.len() - 1] {
        return Err(bad("only sha256 digests are supported"));
    }
    if hex.len() != SHA256_HEX_LEN {
        return Err(bad("a sha256 digest has 64 hex characters"));
    }
    if !is_lower_hex(hex) {
        return Err(bad("digest must be lowercase hex"));
    }
    Ok(digest.to_owned())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = match tag.as_bytes() {
        [first, rest @ ..] => {
            word(*first)
                && tag.len() <= MAX_TAG_LEN
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        [] => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag {
            input: input.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// Host names, IPv4 addresses and bracketed IPv6 addresses, each with an
/// optional numeric port.
fn check_registry(input: &str, registry: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Registry {
        input: input.to_owned(),
        registry: registry.to_owned(),
    };
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Each path component is lowercase alphanumerics joined by single `.`,
/// single or double `_`, or runs of `-` (docker's grammar).
fn check_repository(input: &str, path: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
            });
        }
        if !component_ok(component) {
            return Err(ReferenceError::Repository {
                input: input.to_owned(),
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

fn component_ok(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let ok = run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(input: &str) -> String {
        Reference::parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .to_string()
    }

    #[test]
    fn normalises_like_docker() {
        let digest = format!("sha256:{HEX}");
        let cases = [
            ("busybox", "docker.io/library/busybox:latest".to_owned()),
            ("nginx:1.27", "docker.io/library/nginx:1.27".to_owned()),
            ("library/nginx", "docker.io/library/nginx:latest".to_owned()),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7".to_owned()),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".to_owned(),
            ),
            (
                "index.docker.io/library/busybox:1.36",
                "docker.io/library/busybox:1.36".to_owned(),
            ),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause:3.10".to_owned(),
            ),
            (
                "127.0.0.1:5000/x/y:tag",
                "127.0.0.1:5000/x/y:tag".to_owned(),
            ),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest".to_owned()),
            ("localhost/foo", "localhost/foo:latest".to_owned()),
            ("localhost:5000/foo:v1", "localhost:5000/foo:v1".to_owned()),
            ("[::1]:5000/foo", "[::1]:5000/foo:latest".to_owned()),
            (
                "registry.k8s.io/e2e-test-images/busybox:1.29-2",
                "registry.k8s.io/e2e-test-images/busybox:1.29-2".to_owned(),
            ),
            (
                &format!("ghcr.io/org/app@{digest}"),
                format!("ghcr.io/org/app@{digest}"),
            ),
            (
                &format!("busybox:1.36@{digest}"),
                format!("docker.io/library/busybox:1.36@{digest}"),
            ),
            (
                "a__b/c-d--e/f.g_h",
                "docker.io/a__b/c-d--e/f.g_h:latest".to_owned(),
            ),
            (
                "busybox:_TAG.1-x",
                "docker.io/library/busybox:_TAG.1-x".to_owned(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "input {input}");
        }
    }

    #[test]
    fn fields_are_split() {
        let r = Reference::parse("127.0.0.1:5000/registry.k8s.io/pause:3.10").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "registry.k8s.io/pause");
        assert_eq!(r.tag.as_deref(), Some("3.10"));
        assert_eq!(r.digest, None);

        let digest = format!("sha256:{HEX}");
        let r = Reference::parse(&format!("ghcr.io/org/app@{digest}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.repo_tag(), None);
        assert_eq!(r.repo_digest(&digest), format!("ghcr.io/org/app@{digest}"));

        let r = Reference::parse(&format!("nginx:1.27@{digest}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.27"));
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.repo_tag().unwrap(), "docker.io/library/nginx:1.27");
        assert_eq!(r.canonical_name(), "docker.io/library/nginx");
    }

    #[test]
    fn canonical_names_spell_each_registry_one_way() {
        let digest = format!("sha256:{HEX}");
        for (input, want) in [
            ("QUAY.IO/x/y:1", "quay.io/x/y"),
            ("Quay.Io:443/x/y", "quay.io/x/y"),
            ("ghcr.io:443/org/app:v1", "ghcr.io/org/app"),
            ("ghcr.io:4443/org/app", "ghcr.io:4443/org/app"),
            ("ghcr.io:4430/org/app", "ghcr.io:4430/org/app"),
            ("registry-1.docker.io/library/x", "docker.io/library/x"),
            ("registry-1.docker.io/x", "docker.io/library/x"),
            (
                "REGISTRY-1.DOCKER.IO:443/bitnami/redis",
                "docker.io/bitnami/redis",
            ),
            ("index.docker.io/x", "docker.io/library/x"),
            ("Index.Docker.Io/x", "docker.io/library/x"),
            ("docker.io:443/nginx:1.27", "docker.io/library/nginx"),
            ("busybox", "docker.io/library/busybox"),
            ("bitnami/redis:7", "docker.io/bitnami/redis"),
            ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y"),
            ("[::1]:443/foo", "[::1]/foo"),
            ("LOCALHOST:5000/foo", "localhost:5000/foo"),
            (&format!("ghcr.io/org/app@{digest}"), "ghcr.io/org/app"),
        ] {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.canonical_name(), want, "{input}");
        }
        // Where the image is fetched from is still the pod's spelling.
        let r = Reference::parse("QUAY.IO/x/y:1").unwrap();
        assert_eq!(r.registry, "QUAY.IO");
    }

    #[test]
    fn parse_of_display_is_identity() {
        for input in ["busybox", "localhost/foo", "registry.k8s.io/pause:3.10"] {
            let once = Reference::parse(input).unwrap();
            let twice = Reference::parse(&once.to_string()).unwrap();
            assert_eq!(once, twice);
        }
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        let long = format!("example.com/{}", "a".repeat(250));
        type Check = fn(&ReferenceError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            ("Busybox".into(), |e| {
                matches!(e, ReferenceError::Uppercase { .. })
            }),
            ("example.com/Org/app".into(), |e| {
                matches!(e, ReferenceError::Uppercase { .. })
            }),
            ("busy box".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("foo//bar".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("foo/".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("-foo".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("foo_".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("foo..bar".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("foo___bar".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("foo/../bar".into(), |e| {
                matches!(e, ReferenceError::Repository { .. })
            }),
            ("busybox:".into(), |e| {
                matches!(e, ReferenceError::Tag { .. })
            }),
            ("busybox:-x".into(), |e| {
                matches!(e, ReferenceError::Tag { .. })
            }),
            (format!("busybox:{}", "a".repeat(129)), |e| {
                matches!(e, ReferenceError::Tag { .. })
            }),
            ("busybox@".into(), |e| {
                matches!(e, ReferenceError::Digest { .. })
            }),
            ("busybox@sha256:abc".into(), |e| {
                matches!(e, ReferenceError::Digest { .. })
            }),
            (format!("busybox@sha256:{}", HEX.to_uppercase()), |e| {
                matches!(e, ReferenceError::Digest { .. })
            }),
            (format!("busybox@sha512:{HEX}{HEX}"), |e| {
                matches!(e, ReferenceError::Digest { .. })
            }),
            (format!("busybox@sha256:{HEX}@sha256:{HEX}"), |e| {
                matches!(e, ReferenceError::Digest { .. })
            }),
            ("exa_mple.com/foo".into(), |e| {
                matches!(e, ReferenceError::Registry { .. })
            }),
            ("example.com:port/foo".into(), |e| {
                matches!(e, ReferenceError::Registry { .. })
            }),
            ("-bad.com/foo".into(), |e| {
                matches!(e, ReferenceError::Registry { .. })
            }),
            ("[zz]:5000/foo".into(), |e| {
                matches!(e, ReferenceError::Registry { .. })
            }),
            (long, |e| matches!(e, ReferenceError::TooLong { .. })),
            (HEX.into(), |e| matches!(e, ReferenceError::ImageId { .. })),
        ];
        for (input, check) in cases {
            let err = Reference::parse(&input).expect_err(&input);
            assert!(check(&err), "{input}: unexpected error {err:?}");
            assert!(
                err.to_string().contains(&format!("{input:?}")),
                "message does not name the input: {err}"
            );
        }
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
    }
}
