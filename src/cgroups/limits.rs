//! How CRI resources become cgroup settings, for cgroup v1 (and hybrid)
//! and v2: as `lxc.cgroup[2].*` keys at creation, written into the live
//! cgroup on an update, and the checks a request's values pass first.

use std::path::{Path, PathBuf};

use crate::cgroups::CgroupLayout;

/// CRI Linux resources, as pvecri applies them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: i64,
    pub oom_score_adj: i64,
    pub unified: std::collections::BTreeMap<String, String>,
}

/// `lxc.cgroup*.` settings for the resources on this node's layout.
pub(crate) fn lxc_settings(layout: &CgroupLayout, r: &Resources) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let v2 = matches!(layout, CgroupLayout::Unified);
    let key = |k: &str| {
        if v2 {
            format!("lxc.cgroup2.{k}")
        } else {
            format!("lxc.cgroup.{k}")
        }
    };
    for (file, value) in files(v2, r) {
        out.push((key(&file), value));
    }
    out
}

/// (file, value) pairs for the container's cgroup directory.
pub(crate) fn files(v2: bool, r: &Resources) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if v2 {
        if r.cpu_shares > 0 {
            out.push((
                "cpu.weight".into(),
                shares_to_weight(r.cpu_shares).to_string(),
            ));
        }
        if r.cpu_quota != 0 || r.cpu_period != 0 {
            let period = if r.cpu_period > 0 {
                r.cpu_period
            } else {
                100_000
            };
            let quota = if r.cpu_quota > 0 {
                r.cpu_quota.to_string()
            } else {
                "max".into()
            };
            out.push(("cpu.max".into(), format!("{quota} {period}")));
        }
        if r.memory_limit_in_bytes > 0 {
            out.push(("memory.max".into(), r.memory_limit_in_bytes.to_string()));
            if r.memory_swap_limit_in_bytes > 0 {
                let swap = (r.memory_swap_limit_in_bytes - r.memory_limit_in_bytes).max(0);
                out.push(("memory.swap.max".into(), swap.to_string()));
            }
        }
        if r.pids_limit > 0 {
            out.push(("pids.max".into(), r.pids_limit.to_string()));
        }
        for (k, v) in &r.unified {
            out.push((k.clone(), v.clone()));
        }
    } else {
        if r.cpu_shares > 0 {
            out.push(("cpu.shares".into(), r.cpu_shares.to_string()));
        }
        if r.cpu_period > 0 {
            out.push(("cpu.cfs_period_us".into(), r.cpu_period.to_string()));
        }
        if r.cpu_quota != 0 {
            out.push(("cpu.cfs_quota_us".into(), r.cpu_quota.to_string()));
        }
        if r.memory_limit_in_bytes > 0 {
            out.push((
                "memory.limit_in_bytes".into(),
                r.memory_limit_in_bytes.to_string(),
            ));
        }
        if r.pids_limit > 0 {
            out.push(("pids.max".into(), r.pids_limit.to_string()));
        }
    }
    if !r.cpuset_cpus.is_empty() {
        out.push(("cpuset.cpus".into(), r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        out.push(("cpuset.mems".into(), r.cpuset_mems.clone()));
    }
    out
}

/// Why a resource value from a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResourceError {
    #[error("{0:?} is not a cpu or node list like \"0-3,8\"")]
    CpuList(String),
    #[error("{0:?} is not a cgroup file name")]
    FileName(String),
    #[error("{key:?} is not a file of a resource controller ({controllers})")]
    NotAResourceFile { key: String, controllers: String },
    #[error(transparent)]
    Text(#[from] crate::security::input::InputError),
    #[error("{0:?} has an empty value")]
    Empty(String),
    #[error("{0:?} has leading or trailing white space")]
    WhiteSpace(String),
}

/// A cpuset list as the kernel reads it: numbers and ranges separated by
/// commas (`0-3,8`), or empty.
pub(crate) fn check_cpuset(value: &str) -> Result<(), ResourceError> {
    let number = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = value.is_empty()
        || value.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => number(a) && number(b),
            None => number(part),
        });
    if ok {
        Ok(())
    } else {
        Err(ResourceError::CpuList(value.to_owned()))
    }
}

/// The controllers whose files a request may set through `unified`.
const UNIFIED_CONTROLLERS: &[&str] = &[
    "cpu", "cpuset", "hugetlb", "io", "memory", "misc", "pids", "rdma",
];

/// One `unified` entry (cgroup v2 file name and value) from a request. The
/// file must belong to a resource controller: `devices.*` would rewrite
/// the device policy (liblxc turns `lxc.cgroup2.devices.*` into the
/// container's device program) and `cgroup.*` files shape the hierarchy.
/// The value is written as one config line: no control characters.
pub(crate) fn check_unified(key: &str, value: &str) -> Result<(), ResourceError> {
    let valid_name = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    let controller = key.split('.').next().unwrap_or_default();
    if !valid_name || !key.contains('.') || key.contains("..") {
        return Err(ResourceError::FileName(key.to_owned()));
    }
    if !UNIFIED_CONTROLLERS.contains(&controller) {
        return Err(ResourceError::NotAResourceFile {
            key: key.to_owned(),
            controllers: UNIFIED_CONTROLLERS.join(", "),
        });
    }
    crate::security::input::check_text(value)?;
    if value.is_empty() {
        // liblxc reads `lxc.cgroup2.<file> =` as "clear every cgroup2
        // setting", the device rules included.
        return Err(ResourceError::Empty(key.to_owned()));
    }
    if value.trim() != value {
        return Err(ResourceError::WhiteSpace(value.to_owned()));
    }
    Ok(())
}

/// The kubelet's conversion of CPU shares (2..262144) to cgroup v2 weight (1..10000).
pub(crate) fn shares_to_weight(shares: i64) -> u64 {
    let shares = shares.clamp(2, 262_144) as u64;
    1 + ((shares - 2) * 9999) / 262_142
}

/// The directory holding `file` for the container's cgroup on this node.
pub fn file_dir(layout: &CgroupLayout, container: &str, file: &str) -> PathBuf {
    let controller = file.split('.').next().unwrap_or_default();
    match layout {
        CgroupLayout::Unified => Path::new(super::ROOT).join(container),
        CgroupLayout::Hybrid { .. } | CgroupLayout::Legacy | CgroupLayout::None => {
            let dir = match controller {
                "cpu" => "cpu,cpuacct",
                other => other,
            };
            let base = Path::new(super::ROOT).join(dir);
            let base = if base.exists() {
                base
            } else {
                Path::new(super::ROOT).join(controller)
            };
            base.join(container)
        }
    }
}

/// Writes the resources into a live container cgroup.
pub(crate) fn apply_live(
    layout: &CgroupLayout,
    container: &str,
    r: &Resources,
) -> std::io::Result<()> {
    let v2 = matches!(layout, CgroupLayout::Unified);
    for (file, value) in files(v2, r) {
        let path = file_dir(layout, container, &file).join(&file);
        std::fs::write(&path, &value).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("write {value:?} to {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_v1_and_v2() {
        let r = Resources {
            cpu_shares: 1024,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        let v1 = lxc_settings(&CgroupLayout::Legacy, &r);
        assert!(v1.contains(&("lxc.cgroup.cpu.shares".into(), "1024".into())));
        assert!(v1.contains(&("lxc.cgroup.cpu.cfs_quota_us".into(), "50000".into())));
        assert!(v1.contains(&("lxc.cgroup.memory.limit_in_bytes".into(), "67108864".into())));
        let v2 = lxc_settings(&CgroupLayout::Unified, &r);
        assert!(v2.contains(&("lxc.cgroup2.cpu.weight".into(), "39".into())));
        assert!(v2.contains(&("lxc.cgroup2.cpu.max".into(), "50000 100000".into())));
        assert!(v2.contains(&("lxc.cgroup2.memory.swap.max".into(), "67108864".into())));
        assert!(v2.contains(&("lxc.cgroup2.cpuset.cpus".into(), "0".into())));
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn cpusets_are_number_lists() {
        for ok in ["", "0", "0-3", "0-3,8,10-11"] {
            check_cpuset(ok).unwrap();
        }
        for bad in ["0-", "a", "0\nlxc.hook.start=/bin/x", "1 2", ",", "0-3,,4"] {
            assert!(check_cpuset(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unified_keys_name_resource_controller_files_only() {
        check_unified("memory.high", "1073741824").unwrap();
        check_unified("io.max", "8:0 rbps=1048576").unwrap();
        check_unified("cpu.max", "max 100000").unwrap();
        for (key, value) in [
            ("devices.allow", "a *:* rwm"),
            ("devices.deny", ""),
            ("memory.high", ""),
            ("cgroup.procs", "1"),
            ("cgroup.subtree_control", "+memory"),
            ("../memory.max", "1"),
            ("memory.max\nlxc.hook.start", "1"),
            ("memory", "1"),
            ("MEMORY.max", "1"),
            ("memory.high", "1\nlxc.hook.pre-start = /bin/touch"),
        ] {
            assert!(check_unified(key, value).is_err(), "{key:?} = {value:?}");
        }
    }
}
