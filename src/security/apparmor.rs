//! AppArmor: whether the node has it, and what a requested profile means
//! there.

use super::Profile;

/// Whether the running kernel enforces AppArmor.
pub fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

/// The name of the profile pvecri loads for `RuntimeDefault`.
pub const DEFAULT_PROFILE: &str = "pvecri-default";

/// The AppArmor label the workload should be exec'd into, or `None` for
/// unconfined. Without AppArmor on the node any confined profile is an
/// error, as with containerd: silently running unconfined would be worse.
pub fn resolve(profile: &Profile, node_enabled: bool) -> Result<Option<String>, String> {
    match (profile, node_enabled) {
        (Profile::Unconfined, _) => Ok(None),
        (_, false) => Err("AppArmor is not enabled on this node".to_owned()),
        (Profile::RuntimeDefault, true) => Ok(Some(DEFAULT_PROFILE.to_owned())),
        (Profile::Localhost(name), true) => {
            if name.is_empty() || name.contains(['\0', '\n', ' ']) {
                Err(format!("{name:?} is not a valid AppArmor profile name"))
            } else {
                Ok(Some(name.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_resolve() {
        assert_eq!(resolve(&Profile::Unconfined, false), Ok(None));
        assert!(resolve(&Profile::RuntimeDefault, false).is_err());
        assert_eq!(
            resolve(&Profile::RuntimeDefault, true),
            Ok(Some("pvecri-default".into()))
        );
        assert_eq!(
            resolve(&Profile::Localhost("k8s-nginx".into()), true),
            Ok(Some("k8s-nginx".into()))
        );
        assert!(resolve(&Profile::Localhost("a b".into()), true).is_err());
    }
}
