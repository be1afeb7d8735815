//! Property tests: arbitrary strings in the request fields that reach the
//! LXC config go through the gRPC conversion and the config writer, and
//! the config liblxc loads back holds exactly the keys a harmless request
//! of the same shape gives. A request is either refused with
//! InvalidArgument naming a field, or written without an extra line.

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;

use super::convert;
use super::v1;
use crate::cgroups::CgroupLayout;
use crate::container::lxc_config::{self, BindMount, LxcPlan, Propagation, SharedNamespaces};

/// Strings rich in what breaks line formats, plus any character at all.
fn hostile() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => proptest::char::range('a', 'z'),
        1 => Just('\n'),
        1 => Just('\r'),
        1 => Just(' '),
        1 => Just('\t'),
        1 => Just('\\'),
        1 => Just('#'),
        1 => Just('='),
        1 => Just('\0'),
        1 => Just('/'),
        1 => Just('.'),
        1 => Just(':'),
        1 => Just('\u{85}'),
        2 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..24).prop_map(String::from_iter)
}

/// Mostly printable strings with the characters fstab and config files
/// treat specially: most of them are accepted, so the writer's escaping
/// is exercised too.
fn printable() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => Just(' '),
        1 => Just('\\'),
        1 => Just('#'),
        1 => Just('='),
        1 => Just('/'),
        1 => Just('.'),
        1 => Just(':'),
        1 => proptest::char::range('\u{a0}', '\u{2fff}'),
    ];
    prop::collection::vec(ch, 0..24).prop_map(String::from_iter)
}

/// SELinux levels, and empty.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "s[0-9](-s[0-9])?(:c[0-9]{1,3}(,c[0-9])?)?"
    ]
}

/// `printable` or `hostile`, half and half.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![printable(), hostile()]
}

/// The request fields under test.
#[derive(Debug, Clone)]
struct Fields {
    target: String,
    host: String,
    device: String,
    level: String,
    cpus: String,
    unified_key: String,
    unified_value: String,
    parent: String,
}

impl Fields {
    /// The same shape with harmless values.
    fn harmless(&self) -> Fields {
        let keep_empty = |s: &str, with: &str| {
            if s.is_empty() {
                String::new()
            } else {
                with.to_owned()
            }
        };
        Fields {
            target: "x".into(),
            host: "y".into(),
            device: "z".into(),
            level: keep_empty(&self.level, "s0"),
            cpus: keep_empty(&self.cpus, "0"),
            unified_key: "memory.high".into(),
            unified_value: "1".into(),
            parent: keep_empty(&self.parent, "kubepods"),
        }
    }
}

fn container_request(f: &Fields) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        mounts: vec![v1::Mount {
            container_path: format!("/{}", f.target),
            host_path: format!("/{}", f.host),
            ..Default::default()
        }],
        devices: vec![v1::Device {
            container_path: format!("/dev/{}", f.device),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }],
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(v1::LinuxContainerResources {
                cpuset_cpus: f.cpus.clone(),
                unified: HashMap::from([(f.unified_key.clone(), f.unified_value.clone())]),
                ..Default::default()
            }),
            security_context: Some(v1::LinuxContainerSecurityContext {
                selinux_options: Some(v1::SeLinuxOption {
                    level: f.level.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn pod_request(f: &Fields) -> v1::RunPodSandboxRequest {
    v1::RunPodSandboxRequest {
        config: Some(v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "p".into(),
                ..Default::default()
            }),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent: f.parent.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The request converted and turned into the config text the way
/// CreateContainer does (mount targets unplaced: placing only removes
/// symlinks from them), or the refusal's status.
fn config_text(f: &Fields) -> Result<String, tonic::Status> {
    let pod = convert::pod_config(&pod_request(f), &[String::new()])?;
    let c = convert::container_config(&container_request(f))?;
    let (cgroup_container, cgroup_monitor) = crate::cgroups::paths::container_paths(
        crate::config::CgroupDriver::Cgroupfs,
        &pod.cgroup_parent,
        "c1",
    );
    let layout = CgroupLayout::Unified;
    let rules = crate::container::devices::default_rules();
    let mut mounts: Vec<BindMount> = c
        .mounts
        .iter()
        .map(|m| BindMount {
            source: PathBuf::from(&m.host_path),
            target: m.container_path.clone(),
            readonly: m.readonly,
            flags: m.flags,
            propagation: Propagation::Private,
            file: false,
            create: false,
            optional: false,
        })
        .collect();
    mounts.extend(c.devices.iter().map(|d| BindMount {
        source: PathBuf::from(&d.host_path),
        target: d.container_path.clone(),
        readonly: false,
        flags: Default::default(),
        propagation: Propagation::Private,
        file: true,
        create: true,
        optional: false,
    }));
    let plan = LxcPlan {
        rootfs: "/var/lib/pvecri/rootfs".into(),
        namespaces: SharedNamespaces::default(),
        mounts,
        cgroup_container,
        cgroup_monitor,
        cgroup_settings: crate::container::devices::cgroup_settings(&layout, &rules)
            .into_iter()
            .chain(crate::cgroups::limits::lxc_settings(&layout, &c.resources))
            .collect(),
        oom_score_adj: None,
        log_file: "/run/pvecri/lxc.log".into(),
        privileged: false,
        selinux_label: (!c.security.selinux_label.is_empty())
            .then(|| c.security.selinux_label.clone()),
    };
    // Whatever passed the request checks must be writable: the two layers
    // agree on what is safe.
    Ok(lxc_config::render(&plan).expect("a request that passed validation renders"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn hostile_request_strings_never_add_a_config_line(
        target in field(),
        host in field(),
        device in field(),
        level in prop_oneof![level(), hostile()],
        cpus in prop_oneof![Just(String::new()), "[0-9]{1,2}(-[0-9]{1,2})?(,[0-9])?", hostile()],
        unified_key in prop_oneof![Just("memory.high".to_owned()), hostile()],
        unified_value in field(),
        parent in prop_oneof![Just(String::new()), printable(), hostile()],
    ) {
        let f = Fields { target, host, device, level, cpus, unified_key, unified_value, parent };
        match config_text(&f) {
            Err(status) => {
                prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
                prop_assert!(
                    status.message().starts_with("config."),
                    "the refusal names the field: {}",
                    status.message()
                );
            }
            Ok(text) => {
                let harmless = config_text(&f.harmless()).expect("harmless fields are accepted");
                let got = lxc_config::tests::loaded(&text);
                let want = lxc_config::tests::loaded(&harmless);
                prop_assert_eq!(
                    got.keys().collect::<Vec<_>>(),
                    want.keys().collect::<Vec<_>>(),
                    "config:\n{}", text
                );
                for (key, value) in &want {
                    prop_assert_eq!(
                        got[key].lines().count(),
                        value.lines().count(),
                        "{} in\n{}", key, text
                    );
                }
            }
        }
    }
}

#[test]
fn enough_requests_are_accepted_to_test_the_writer() {
    // The property above only means something if the accepting branch
    // runs: with the field generators it uses, a good share of requests
    // must pass validation (the bound is loose: the runner's seed varies).
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &(printable(), printable(), level()),
            |(target, host, level)| {
                let f = Fields {
                    target,
                    host,
                    device: "d".into(),
                    level,
                    cpus: String::new(),
                    unified_key: "memory.high".into(),
                    unified_value: "1".into(),
                    parent: String::new(),
                };
                if config_text(&f).is_ok() {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            },
        )
        .unwrap();
    let n = accepted.into_inner();
    assert!(n >= 16, "only {n} of 64 requests were accepted");
}

#[test]
fn the_reported_injection_is_refused_naming_the_field() {
    let f = Fields {
        target: "x\nlxc.hook.pre-start=/usr/bin/touch".into(),
        host: "y".into(),
        device: "z".into(),
        level: String::new(),
        cpus: String::new(),
        unified_key: "memory.high".into(),
        unified_value: "1".into(),
        parent: String::new(),
    };
    let err = config_text(&f).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("config.mounts[0].container_path"),
        "{}",
        err.message()
    );
}
