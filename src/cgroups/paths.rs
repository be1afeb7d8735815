//! Where a container's cgroup and its monitor's live, relative to each
//! hierarchy's root, for the cgroupfs and systemd drivers.

use crate::config::CgroupDriver;

/// The cgroup (relative to each hierarchy's root) of a container, and of
/// its pvecri monitor, kept outside the pod so the pod's accounting is the
/// workload's alone.
pub(crate) fn container_paths(driver: CgroupDriver, parent: &str, id: &str) -> (String, String) {
    let parent = match driver {
        CgroupDriver::Systemd if parent.ends_with(".slice") => expand_slice(parent),
        _ => parent.trim_matches('/').to_owned(),
    };
    let leaf = match driver {
        CgroupDriver::Systemd => format!("pvecri-{id}.scope"),
        CgroupDriver::Cgroupfs => id.to_owned(),
    };
    let container = if parent.is_empty() {
        format!("pvecri/{leaf}")
    } else {
        format!("{parent}/{leaf}")
    };
    (container, monitor_path(id))
}

/// The cgroup liblxc puts a container's monitor in (its starter, running
/// liblxc's start, stays there for the container's life).
pub(crate) fn monitor_path(id: &str) -> String {
    format!("pvecri.monitor/{id}")
}

/// `kubepods-burstable-pod1.slice` -> `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`,
/// the path systemd gives a nested slice.
pub(crate) fn expand_slice(slice: &str) -> String {
    let name = slice.trim_matches('/').trim_end_matches(".slice");
    if name.is_empty() || name == "-" {
        return String::new();
    }
    let parts: Vec<&str> = name.split('-').collect();
    (1..=parts.len())
        .map(|n| format!("{}.slice", parts[..n].join("-")))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(
            expand_slice("kubepods-burstable-pod1.slice"),
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
        );
        assert_eq!(expand_slice("system.slice"), "system.slice");
        assert_eq!(expand_slice("-.slice"), "");
    }

    #[test]
    fn container_paths_per_driver() {
        assert_eq!(
            container_paths(CgroupDriver::Cgroupfs, "/kubepods/burstable/pod1", "c1"),
            (
                "kubepods/burstable/pod1/c1".into(),
                "pvecri.monitor/c1".into()
            )
        );
        assert_eq!(
            container_paths(CgroupDriver::Cgroupfs, "", "c1").0,
            "pvecri/c1"
        );
        assert_eq!(
            container_paths(CgroupDriver::Systemd, "kubepods-pod1.slice", "c1").0,
            "kubepods.slice/kubepods-pod1.slice/pvecri-c1.scope"
        );
    }
}
