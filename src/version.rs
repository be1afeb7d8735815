//! Version strings reported by the CLI and the CRI `Version` call.

/// The runtime name the kubelet and crictl show.
pub(crate) const RUNTIME_NAME: &str = "pvecri";
/// The CRI API version pvecri speaks.
pub(crate) const CRI_API_VERSION: &str = "v1";
/// The kubelet-runtime API version field of `VersionResponse`.
pub(crate) const KUBELET_API_VERSION: &str = "0.1.0";

pub(crate) const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
pub(crate) const GIT_HASH: &str = env!("PVECRI_GIT_HASH");
/// [`runtime_version`] as a constant: what `pvecri-helper --version`
/// prints after its name, so the daemon can tell a helper of its own build.
pub(crate) const BUILD_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), "+g", env!("PVECRI_GIT_HASH"));

/// `0.1.0+g1a2b3c4d5e6f`: the package version with the git revision as
/// semver build metadata.
pub(crate) fn runtime_version() -> String {
    format!("{PACKAGE_VERSION}+g{GIT_HASH}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn runtime_version_carries_the_git_hash() {
        let v = super::runtime_version();
        assert!(v.starts_with(super::PACKAGE_VERSION));
        assert!(v.contains("+g"), "{v}");
    }
}
