//! Capability sets: the Kubernetes default set, add/drop with `ALL`, as a
//! bit mask of capability numbers for pvecri-init.

use std::str::FromStr;

use caps::Capability;

/// What containerd and CRI-O grant a non-privileged container.
pub(crate) const DEFAULT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown capability {0:?}")]
pub(crate) struct UnknownCapability(pub String);

/// Parses `NET_ADMIN`, `CAP_NET_ADMIN` or `net_admin`.
pub(crate) fn parse(name: &str) -> Result<Capability, UnknownCapability> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full).map_err(|_| UnknownCapability(name.to_owned()))
}

fn all() -> u64 {
    caps::all().iter().fold(0, |m, c| m | c.bitmask())
}

fn mask_of(names: &[String]) -> Result<u64, UnknownCapability> {
    let mut mask = 0;
    for n in names {
        if n.eq_ignore_ascii_case("ALL") {
            mask |= all();
        } else {
            mask |= parse(n)?.bitmask();
        }
    }
    Ok(mask)
}

/// The set a container keeps: the default set plus `add`, minus `drop`.
/// `ALL` in `add` starts from every capability; `ALL` in `drop` removes
/// everything not explicitly added (Kubernetes: `drop: [ALL], add: [X]`
/// keeps exactly X).
pub(crate) fn resolve(add: &[String], drop: &[String]) -> Result<u64, UnknownCapability> {
    let added = mask_of(add)?;
    let dropped = mask_of(drop)?;
    let base = DEFAULT.iter().fold(0, |m, c| m | c.bitmask());
    let drops_all = drop.iter().any(|d| d.eq_ignore_ascii_case("ALL"));
    let adds_all = add.iter().any(|a| a.eq_ignore_ascii_case("ALL"));
    Ok(if drops_all {
        added
    } else if adds_all {
        all() & !dropped
    } else {
        (base | added) & !dropped
    })
}

/// Whether `mask` holds `cap`.
pub(crate) fn has(mask: u64, cap: Capability) -> bool {
    mask & cap.bitmask() != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_set_and_add_drop() {
        let d = resolve(&[], &[]).unwrap();
        assert!(has(d, Capability::CAP_NET_RAW));
        assert!(!has(d, Capability::CAP_NET_ADMIN));
        assert!(!has(d, Capability::CAP_SYS_ADMIN));
        assert_eq!(d.count_ones(), 14);
        let m = resolve(&names(&["NET_ADMIN"]), &names(&["NET_RAW"])).unwrap();
        assert!(has(m, Capability::CAP_NET_ADMIN));
        assert!(!has(m, Capability::CAP_NET_RAW));
        let m = resolve(&names(&["cap_sys_admin"]), &[]).unwrap();
        assert!(has(m, Capability::CAP_SYS_ADMIN));
    }

    #[test]
    fn all_in_add_and_drop() {
        assert_eq!(resolve(&[], &names(&["ALL"])).unwrap(), 0);
        let m = resolve(&names(&["NET_BIND_SERVICE"]), &names(&["all"])).unwrap();
        assert_eq!(m, Capability::CAP_NET_BIND_SERVICE.bitmask());
        let m = resolve(&names(&["ALL"]), &names(&["SYS_ADMIN"])).unwrap();
        assert!(has(m, Capability::CAP_SYS_MODULE));
        assert!(!has(m, Capability::CAP_SYS_ADMIN));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve(&names(&["NET_WIZARD"]), &[]).unwrap_err(),
            UnknownCapability("NET_WIZARD".into())
        );
    }
}
