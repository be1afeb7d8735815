//! CDI names, spec files, the registry's trust rules and the edits, on
//! spec files written to temporary directories (trusted as the user the
//! tests run as).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::edits::EditError;
use super::registry::{self, Registry, SpecFileError};
use super::{name, resolve_in, CdiError, Edits};
use crate::container::{ContainerConfig, DeviceSpec, MountFlags, MountSpec, Propagation};

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A spec directory with its files written 0644.
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
        Dir(d)
    }

    fn path(&self) -> PathBuf {
        self.0.path().to_owned()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o644)).unwrap();
        path
    }
}

fn load(dirs: &[&Dir]) -> Registry {
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| d.path()).collect();
    Registry::load_owned_by(&dirs, me())
}

fn resolve(dirs: &[&Dir], names: &[&str], privileged: bool) -> Result<Edits, CdiError> {
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.path()).collect();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    resolve_in(&load(dirs), &paths, &names, privileged)
}

fn known(registry: &Registry, device: &str) -> bool {
    registry.device(&name::parse(device).unwrap()).is_some()
}

/// A JSON spec of kind `test.pvecri.dev/x` with one device `name` whose
/// edits are `edits` (a JSON object body).
fn spec(name: &str, edits: &str) -> String {
    format!(
        r#"{{"cdiVersion": "0.6.0", "kind": "test.pvecri.dev/x",
            "devices": [{{"name": "{name}", "containerEdits": {{{edits}}}}}]}}"#
    )
}

// ---- names ----

#[test]
fn qualified_names_follow_the_cdi_rules() {
    for good in [
        "nvidia.com/gpu=0",
        "nvidia.com/gpu=all",
        "vendor.com/class=dev",
        "a/b=c",
        "intel.com/gpu=card0:render-d128",
        "example.com/net_x.y=GPU-1234_ab.cd",
        "v/c=0abc",
    ] {
        let n = name::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert_eq!(n.to_string(), good);
    }
    for bad in [
        "",
        "gpu0",
        "=x",
        "/gpu=0",
        "nvidia.com=0",
        "nvidia.com/=0",
        "nvidia.com/gpu=",
        "nvidia.com/gpu/x=0",
        "0vidia.com/gpu=0",
        "nvidia.com/_gpu=0",
        "nvidia.com-/gpu=0",
        "nvidia.com/gpu=0-",
        "nvidia.com/gpu=-0",
        "nvidia.com/gpu=a/b",
        "nvidia.com/gpu=../../x",
        "nvidia.com/gpu=a b",
        "nvidia.com/gpu=a\nb",
        "nvidia.com/gpu=a=b",
        "nvïdia.com/gpu=0",
        "../etc/cdi=x",
    ] {
        assert!(name::parse(bad).is_err(), "{bad:?} was accepted");
    }
    let long = format!("v.com/{}=0", "c".repeat(64));
    assert!(name::parse(&long).is_err());
    let ok = format!("v.com/{}=0", "c".repeat(63));
    name::parse(&ok).unwrap();
}

// ---- spec files ----

#[test]
fn specs_parse_from_json_and_yaml_alike() {
    let yaml = r#"
cdiVersion: 0.7.0
kind: test.pvecri.dev/x
annotations: {a: b}
containerEdits:
  env: [SPEC=1]
devices:
  - name: d0
    containerEdits:
      deviceNodes:
        - path: /dev/pvecri0
          hostPath: /dev/null
          type: c
          major: 1
          minor: 3
          permissions: rw
      mounts:
        - hostPath: /etc
          containerPath: /host-etc
          type: bind
          options: [ro, rbind, nosuid]
      additionalGids: [0, 44]
"#;
    let s = registry::parse(yaml, false).unwrap();
    registry::check(&s).unwrap();
    assert_eq!(s.devices[0].container_edits.device_nodes[0].minor, Some(3));
    assert_eq!(s.container_edits.env, vec!["SPEC=1".to_owned()]);
    let json = spec("d0", r#""env": ["A=1"]"#);
    let s = registry::parse(&json, true).unwrap();
    registry::check(&s).unwrap();
    assert_eq!(s.devices[0].container_edits.env, vec!["A=1".to_owned()]);
}

#[test]
fn unknown_fields_and_versions_make_a_spec_invalid() {
    // An edit pvecri does not know would otherwise be dropped silently.
    let unknown_edit = spec("d0", r#""futureEdit": [1]"#);
    assert!(matches!(
        registry::parse(&unknown_edit, true),
        Err(SpecFileError::Parse(_))
    ));
    let unknown_node_field = spec(
        "d0",
        r#""deviceNodes": [{"path": "/dev/x", "setuid": true}]"#,
    );
    assert!(registry::parse(&unknown_node_field, true).is_err());
    for (version, ok) in [
        ("0.6.0", true),
        ("v1.1.0", true),
        ("9.0.0", false),
        ("", false),
    ] {
        let text = spec("d0", "").replace("0.6.0", version);
        let s = registry::parse(&text, true).unwrap();
        assert_eq!(registry::check(&s).is_ok(), ok, "{version}");
    }
    for kind in ["nokind", "a/b/c", "-a/b", "a/"] {
        let text = spec("d0", "").replace("test.pvecri.dev/x", kind);
        let s = registry::parse(&text, true).unwrap();
        assert!(registry::check(&s).is_err(), "{kind}");
    }
    let twice = r#"{"cdiVersion": "0.6.0", "kind": "v.com/c",
        "devices": [{"name": "a", "containerEdits": {}}, {"name": "a", "containerEdits": {}}]}"#;
    assert!(registry::check(&registry::parse(twice, true).unwrap()).is_err());
    let none = r#"{"cdiVersion": "0.6.0", "kind": "v.com/c", "devices": []}"#;
    assert!(registry::check(&registry::parse(none, true).unwrap()).is_err());
    let bad_name = spec("a/../b", "");
    assert!(registry::check(&registry::parse(&bad_name, true).unwrap()).is_err());
}

// ---- the registry's trust rules ----

#[test]
fn specs_load_from_json_yaml_and_yml_files_only() {
    let d = Dir::new();
    d.write("a.json", &spec("json", ""));
    d.write(
        "b.yaml",
        "cdiVersion: 0.6.0\nkind: test.pvecri.dev/x\ndevices: [{name: yaml}]\n",
    );
    d.write(
        "c.yml",
        "cdiVersion: 0.6.0\nkind: test.pvecri.dev/x\ndevices: [{name: yml}]\n",
    );
    d.write("d.txt", &spec("txt", ""));
    let r = load(&[&d]);
    for (device, there) in [
        ("json", true),
        ("yaml", true),
        ("yml", true),
        ("txt", false),
    ] {
        assert_eq!(
            known(&r, &format!("test.pvecri.dev/x={device}")),
            there,
            "{device}"
        );
    }
}

#[test]
fn files_others_could_write_are_ignored() {
    let d = Dir::new();
    let world = d.write("world.json", &spec("world", ""));
    std::fs::set_permissions(&world, PermissionsExt::from_mode(0o666)).unwrap();
    let group = d.write("group.json", &spec("group", ""));
    std::fs::set_permissions(&group, PermissionsExt::from_mode(0o664)).unwrap();
    d.write("good.json", &spec("good", ""));
    let r = load(&[&d]);
    assert!(!known(&r, "test.pvecri.dev/x=world"));
    assert!(!known(&r, "test.pvecri.dev/x=group"));
    assert!(known(&r, "test.pvecri.dev/x=good"));
}

#[test]
fn files_of_another_owner_are_ignored() {
    let d = Dir::new();
    d.write("a.json", &spec("a", ""));
    // Trusting another uid than the files' owner: as for a user's file
    // when root is trusted. The directory is refused first.
    let other = Registry::load_owned_by(&[d.path()], me().wrapping_add(1));
    assert!(!known(&other, "test.pvecri.dev/x=a"));
    assert!(known(&load(&[&d]), "test.pvecri.dev/x=a"));
    // A file of nobody's in root's directory (only root can make one).
    if me() == 0 {
        let theirs = d.write("theirs.json", &spec("theirs", ""));
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let r = load(&[&d]);
        assert!(!known(&r, "test.pvecri.dev/x=theirs"));
        assert!(known(&r, "test.pvecri.dev/x=a"));
    }
}

#[test]
fn a_directory_others_could_write_is_ignored_whole() {
    let d = Dir::new();
    d.write("a.json", &spec("a", ""));
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o777)).unwrap();
    assert!(!known(&load(&[&d]), "test.pvecri.dev/x=a"));
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o1777)).unwrap();
    assert!(!known(&load(&[&d]), "test.pvecri.dev/x=a"));
}

#[test]
fn symlinks_fifos_and_huge_files_are_ignored_without_hanging() {
    let d = Dir::new();
    let target = d.write("real.txt", &spec("linked", ""));
    std::os::unix::fs::symlink(&target, d.path().join("link.json")).unwrap();
    nix::unistd::mkfifo(
        &d.path().join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let huge = format!(
        "{{\"cdiVersion\": \"0.6.0\", \"kind\": \"test.pvecri.dev/x\", \"devices\": [{{\"name\": \"huge\"}}], \"annotations\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(5 << 20)
    );
    d.write("huge.json", &huge);
    std::fs::create_dir(d.path().join("dir.json")).unwrap();
    d.write("broken.json", "{ not json");
    d.write("good.json", &spec("good", ""));
    let r = load(&[&d]);
    assert!(!known(&r, "test.pvecri.dev/x=linked"));
    assert!(!known(&r, "test.pvecri.dev/x=huge"));
    assert!(known(&r, "test.pvecri.dev/x=good"));
}

#[test]
fn later_directories_override_and_a_conflict_in_one_hides_the_device() {
    let (etc, run) = (Dir::new(), Dir::new());
    etc.write("a.json", &spec("dev", r#""env": ["FROM=etc"]"#));
    etc.write("b.json", &spec("only-etc", ""));
    run.write("a.json", &spec("dev", r#""env": ["FROM=run"]"#));
    let edits = resolve(&[&etc, &run], &["test.pvecri.dev/x=dev"], false).unwrap();
    assert_eq!(edits.env, vec![("FROM".into(), "run".into())]);
    let edits = resolve(&[&run, &etc], &["test.pvecri.dev/x=dev"], false).unwrap();
    assert_eq!(edits.env, vec![("FROM".into(), "etc".into())]);
    assert!(resolve(&[&etc, &run], &["test.pvecri.dev/x=only-etc"], false).is_ok());

    // Two files of one directory: neither wins, and the device is gone.
    run.write("z.json", &spec("dev", r#""env": ["FROM=run-z"]"#));
    assert!(matches!(
        resolve(&[&etc, &run], &["test.pvecri.dev/x=dev"], false),
        Err(CdiError::UnknownDevice { .. })
    ));
}

#[test]
fn missing_directories_are_no_error() {
    let d = Dir::new();
    let r = Registry::load_owned_by(
        &[d.path().join("nope"), PathBuf::from("/nonexistent")],
        me(),
    );
    assert!(!known(&r, "a/b=c"));
}

// ---- edits ----

#[test]
fn spec_edits_apply_once_before_the_devices_in_the_order_asked() {
    let d = Dir::new();
    d.write(
        "gpu.yaml",
        r#"
cdiVersion: 0.7.0
kind: test.pvecri.dev/gpu
containerEdits:
  env: [DRIVER=1]
  additionalGids: [0, 44]
devices:
  - name: "0"
    containerEdits:
      env: [GPU=0]
      deviceNodes: [{path: /dev/pvecri-gpu0, hostPath: /dev/null, permissions: rw}]
  - name: "1"
    containerEdits:
      env: [GPU=1]
      deviceNodes: [{path: /dev/pvecri-gpu1, hostPath: /dev/zero, type: c, major: 1, minor: 5}]
      mounts:
        - {hostPath: /etc, containerPath: /opt/etc, options: [ro, nosuid, nodev, bind, rslave]}
"#,
    );
    let edits = resolve(
        &[&d],
        &[
            "test.pvecri.dev/gpu=1",
            "test.pvecri.dev/gpu=0",
            "test.pvecri.dev/gpu=1",
        ],
        false,
    )
    .unwrap();
    assert_eq!(
        edits.env,
        vec![
            ("DRIVER".into(), "1".into()),
            ("GPU".into(), "1".into()),
            ("GPU".into(), "0".into()),
        ]
    );
    assert_eq!(edits.groups, vec![44]);
    assert_eq!(
        edits.devices,
        vec![
            DeviceSpec {
                host_path: "/dev/zero".into(),
                container_path: "/dev/pvecri-gpu1".into(),
                permissions: "rwm".into(),
            },
            DeviceSpec {
                host_path: "/dev/null".into(),
                container_path: "/dev/pvecri-gpu0".into(),
                permissions: "rw".into(),
            },
        ]
    );
    assert_eq!(
        edits.mounts,
        vec![MountSpec {
            container_path: "/opt/etc".into(),
            host_path: "/etc".into(),
            readonly: true,
            propagation: Propagation::Slave,
            flags: MountFlags {
                nosuid: true,
                nodev: true,
                noexec: false,
            },
            ..Default::default()
        }]
    );
}

#[test]
fn unknown_devices_are_not_found_by_name() {
    let d = Dir::new();
    d.write("a.json", &spec("a", ""));
    match resolve(&[&d], &["test.pvecri.dev/x=b"], false) {
        Err(CdiError::UnknownDevice { device, dirs }) => {
            assert_eq!(device, "test.pvecri.dev/x=b");
            assert!(dirs.contains(&d.path().display().to_string()), "{dirs}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hooks_rdt_and_net_devices_are_refused_naming_device_and_edit() {
    let d = Dir::new();
    d.write(
        "a.json",
        r#"{"cdiVersion": "1.1.0", "kind": "test.pvecri.dev/x",
            "devices": [
              {"name": "hook", "containerEdits": {"hooks": [{"hookName": "createContainer", "path": "/usr/bin/touch", "args": ["touch", "/pwned"]}]}},
              {"name": "rdt", "containerEdits": {"intelRdt": {"closID": "x"}}},
              {"name": "net", "containerEdits": {"netDevices": [{"hostInterfaceName": "eth0", "name": "eth1"}]}},
              {"name": "fine", "containerEdits": {"env": ["A=1"]}}
            ]}"#,
    );
    d.write(
        "spec-hook.json",
        r#"{"cdiVersion": "0.6.0", "kind": "test.pvecri.dev/y",
            "containerEdits": {"hooks": [{"hookName": "poststart", "path": "/bin/true"}]},
            "devices": [{"name": "plain", "containerEdits": {}}]}"#,
    );
    for (device, edit) in [
        ("test.pvecri.dev/x=hook", "hooks"),
        ("test.pvecri.dev/x=rdt", "intelRdt"),
        ("test.pvecri.dev/x=net", "netDevices"),
        ("test.pvecri.dev/y=plain", "hooks"),
    ] {
        let err = resolve(&[&d], &["test.pvecri.dev/x=fine", device], false).unwrap_err();
        assert!(
            matches!(&err, CdiError::Unsupported { device: dv, edit: e, .. } if dv == device && *e == edit),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains(device) && text.contains(edit), "{text}");
    }
}

/// The edit error of a device whose only edits are `edits`.
fn edit_error(edits: &str, privileged: bool) -> EditError {
    let d = Dir::new();
    d.write("a.json", &spec("d", edits));
    match resolve(&[&d], &["test.pvecri.dev/x=d"], privileged) {
        Err(CdiError::Edit { device, source, .. }) => {
            assert_eq!(device, "test.pvecri.dev/x=d");
            *source
        }
        other => panic!("{edits}: {other:?}"),
    }
}

#[test]
fn hostile_device_nodes_are_refused() {
    for (edits, expect) in [
        (
            r#""deviceNodes": [{"path": "/etc/shadow", "hostPath": "/dev/null"}]"#,
            "not under /dev",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/../etc/x", "hostPath": "/dev/null"}]"#,
            "\"..\"",
        ),
        (
            r#""deviceNodes": [{"path": "dev/x", "hostPath": "/dev/null"}]"#,
            "not an absolute path",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x\nlxc.hook.pre-start=/bin/sh", "hostPath": "/dev/null"}]"#,
            "control character",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "dev/null"}]"#,
            "not an absolute path",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/pvecri-no-such-node"}]"#,
            "does not exist",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/etc/hostname"}]"#,
            "not a character or block device",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "b"}]"#,
            "type b is not the node's (c)",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "type": "p"}]"#,
            "type \"p\"",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "major": 8, "minor": 0}]"#,
            "major 8 is not the node's (1)",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "minor": 5}]"#,
            "minor 5",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "fileMode": 2048}]"#,
            "fileMode",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "uid": 1000}]"#,
            "uid 1000",
        ),
        (
            r#""deviceNodes": [{"path": "/dev/x", "hostPath": "/dev/null", "permissions": "rwx"}]"#,
            "subset",
        ),
    ] {
        let err = edit_error(edits, false);
        let text = crate::errors::chain(&err);
        assert!(text.contains(expect), "{edits}: {text}");
    }
    // A symlink to a device is not the device.
    let d = Dir::new();
    let link = d.path().join("null-link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let err = edit_error(
        &format!(
            r#""deviceNodes": [{{"path": "/dev/x", "hostPath": "{}"}}]"#,
            link.display()
        ),
        false,
    );
    assert!(matches!(err, EditError::NotADevice { .. }), "{err:?}");
}

#[test]
fn device_nodes_that_describe_the_node_are_accepted() {
    let d = Dir::new();
    // /dev/null is 0666 root:root everywhere.
    d.write(
        "a.json",
        &spec(
            "d",
            r#""deviceNodes": [
                {"path": "/dev/a", "hostPath": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 438, "uid": 0, "gid": 0},
                {"path": "/dev/b", "hostPath": "/dev/null", "type": "u", "permissions": "none"}
            ]"#,
        ),
    );
    let edits = resolve(&[&d], &["test.pvecri.dev/x=d"], false).unwrap();
    assert_eq!(edits.devices[0].permissions, "rwm");
    assert_eq!(edits.devices[1].permissions, "");
}

#[test]
fn hostile_mounts_are_refused() {
    let (priv_ok, unpriv_bad) = (true, false);
    for (edits, privileged, expect) in [
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/../../etc", "options": ["bind"]}]"#,
            unpriv_bad,
            "\"..\"",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "etc/x", "options": ["bind"]}]"#,
            unpriv_bad,
            "not an absolute path",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/", "options": ["bind"]}]"#,
            unpriv_bad,
            "root",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/proc/sys", "options": ["bind"]}]"#,
            unpriv_bad,
            "/proc or /sys",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/x\n", "options": ["bind"]}]"#,
            unpriv_bad,
            "control character",
        ),
        (
            r#""mounts": [{"hostPath": "etc", "containerPath": "/x", "options": ["bind"]}]"#,
            unpriv_bad,
            "not an absolute path",
        ),
        (
            r#""mounts": [{"hostPath": "/etc/../root", "containerPath": "/x", "options": ["bind"]}]"#,
            unpriv_bad,
            "\"..\"",
        ),
        (
            r#""mounts": [{"hostPath": "/pvecri-no-such-dir", "containerPath": "/x", "options": ["bind"]}]"#,
            unpriv_bad,
            "does not exist",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/x", "type": "tmpfs"}]"#,
            priv_ok,
            "type \"tmpfs\"",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/x"}]"#,
            priv_ok,
            "type \"\"",
        ),
        (
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/x", "options": ["bind", "mode=777"]}]"#,
            priv_ok,
            "option \"mode=777\"",
        ),
        (r#""env": ["NOEQUALS"]"#, priv_ok, "not NAME=value"),
        (r#""env": ["=x"]"#, priv_ok, "needs a name"),
        (r#""env": ["A\nB=x"]"#, priv_ok, "control character"),
    ] {
        let err = edit_error(edits, privileged);
        let text = crate::errors::chain(&err);
        assert!(text.contains(expect), "{edits}: {text}");
    }
    // A host path that is a symlink is not followed.
    let d = Dir::new();
    let link = d.path().join("etc-link");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let err = edit_error(
        &format!(
            r#""mounts": [{{"hostPath": "{}", "containerPath": "/x", "options": ["bind"]}}]"#,
            link.display()
        ),
        false,
    );
    assert!(matches!(err, EditError::MountSymlink { .. }), "{err:?}");
    // A privileged container may mount over /proc, as with CRI mounts.
    let d = Dir::new();
    d.write(
        "a.json",
        &spec(
            "d",
            r#""mounts": [{"hostPath": "/etc", "containerPath": "/proc/x", "type": "bind"}]"#,
        ),
    );
    resolve(&[&d], &["test.pvecri.dev/x=d"], true).unwrap();
}

#[test]
fn edits_join_the_request_and_replace_what_targets_the_same_path() {
    let request = ContainerConfig {
        envs: vec![("A".into(), "request".into())],
        devices: vec![DeviceSpec {
            host_path: "/dev/zero".into(),
            container_path: "/dev/x".into(),
            permissions: "r".into(),
        }],
        mounts: vec![
            MountSpec {
                container_path: "/data".into(),
                host_path: "/srv/a".into(),
                ..Default::default()
            },
            MountSpec {
                container_path: "/keep".into(),
                host_path: "/srv/b".into(),
                ..Default::default()
            },
        ],
        supplemental_groups: vec![7],
        ..Default::default()
    };
    let edits = Edits {
        env: vec![("A".into(), "cdi".into())],
        devices: vec![
            DeviceSpec {
                host_path: "/dev/null".into(),
                container_path: "/dev/x".into(),
                permissions: "rw".into(),
            },
            DeviceSpec {
                host_path: "/dev/full".into(),
                container_path: "/dev/y".into(),
                permissions: "rw".into(),
            },
        ],
        mounts: vec![MountSpec {
            container_path: "/data".into(),
            host_path: "/opt/cdi".into(),
            readonly: true,
            ..Default::default()
        }],
        groups: vec![44],
    };
    let made = edits.applied_to(&request);
    assert_eq!(
        made.envs,
        vec![("A".into(), "request".into()), ("A".into(), "cdi".into())]
    );
    assert_eq!(made.devices.len(), 2);
    assert_eq!(made.devices[0].host_path, "/dev/null");
    assert_eq!(made.devices[1].container_path, "/dev/y");
    // In place: the request's mounts keep their indexes.
    assert_eq!(made.mounts[0].host_path, "/opt/cdi");
    assert!(made.mounts[0].readonly);
    assert_eq!(made.mounts[1].container_path, "/keep");
    assert_eq!(made.supplemental_groups, vec![7, 44]);
    // No edits, no change.
    assert_eq!(Edits::default().applied_to(&request), request);
}
