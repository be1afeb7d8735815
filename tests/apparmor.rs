//! AppArmor on real containers, through the real daemon: RuntimeDefault
//! confines the workload with pvecri's profile and its denials hold even
//! against a capability that would otherwise allow the act; a Localhost
//! profile is applied by name; Unconfined is unconfined.
//!
//! This machine's kernel has no AppArmor, so here the tests skip loudly;
//! the VM stage (`scripts/node-vm.sh test apparmor`) boots a kernel with
//! AppArmor enforcing and sets PVECRI_REQUIRE_APPARMOR=1, under which a
//! missing AppArmor fails instead.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{
    container_config, create_container, mirror_config, pull_image, require_init, require_registry,
    require_root, Daemon,
};
use pvecri::client::CriClient;
use pvecri::cri::v1;
use v1::security_profile::ProfileType;

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
/// A profile of the test's own: everything allowed but writes under /etc.
const LOCALHOST: &str = "pvecri-test-localhost";

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn ready(test: &str) -> bool {
    if !(require_root(test) && require_registry(test) && require_init(test)) {
        return false;
    }
    if apparmor_enabled() {
        return true;
    }
    assert!(
        std::env::var("PVECRI_REQUIRE_APPARMOR").as_deref() != Ok("1"),
        "{test}: AppArmor is not enabled on this kernel, but the VM stage requires it"
    );
    eprintln!(
        "SKIP {test}: AppArmor is not enabled on this kernel \
         (scripts/node-vm.sh test apparmor runs it)"
    );
    false
}

fn localhost_profile() -> String {
    format!(
        "profile {LOCALHOST} flags=(attach_disconnected,mediate_deleted) {{\n  \
         file,\n  network,\n  capability,\n  umount,\n  signal,\n  ptrace,\n  \
         deny /etc/** w,\n}}\n"
    )
}

/// A profile as small as a pod author may write: the base abstraction
/// and files, no capability or other rules, writes audited. The workload
/// runs under it; pvecri's own set-up before the exec must not need more.
const MINIMAL: &str = "pvecri-test-minimal";

fn minimal_profile() -> String {
    format!(
        "#include <tunables/global>\nprofile {MINIMAL} flags=(attach_disconnected) {{\n  \
         #include <abstractions/base>\n  file,\n  audit /** w,\n}}\n"
    )
}

/// Loads (`-r`) or removes (`-R`) a profile.
fn parser(flag: &str, text: &str) {
    let mut child = Command::new("apparmor_parser")
        .arg(flag)
        .stdin(Stdio::piped())
        .spawn()
        .expect("apparmor_parser runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "apparmor_parser {flag}");
}

/// A loaded profile, removed again when the test ends.
struct LoadedProfile(String);

impl LoadedProfile {
    fn load(text: String) -> Self {
        parser("-r", &text);
        LoadedProfile(text)
    }
}

impl Drop for LoadedProfile {
    fn drop(&mut self) {
        parser("-R", &self.0);
    }
}

struct Env {
    _d: Daemon,
    c: CriClient,
    _logs: tempfile::TempDir,
    pod_id: String,
    pod: v1::PodSandboxConfig,
}

async fn env(name: &str) -> Env {
    let d = Daemon::start(&mirror_config());
    let mut c = d.client().await;
    pull_image(&mut c, BUSYBOX).await;
    let logs = tempfile::tempdir().unwrap();
    let pod = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "apparmor".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let pod_id = common::run_pod_sandbox(&mut c, &pod).await.unwrap();
    Env {
        _d: d,
        c,
        _logs: logs,
        pod_id,
        pod,
    }
}

fn profile(t: ProfileType, name: &str) -> Option<v1::SecurityProfile> {
    Some(v1::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: name.into(),
    })
}

/// Creates and starts `sleep 3600` with this security context.
async fn running(e: &mut Env, name: &str, sc: v1::LinuxContainerSecurityContext) -> String {
    let config = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(sc),
            ..Default::default()
        }),
        ..container_config(name, BUSYBOX, &["sleep", "3600"])
    };
    let id = create_container(&mut e.c, &e.pod_id, &e.pod, config)
        .await
        .unwrap();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    id
}

/// (exit code, stdout, stderr) of `sh -c script` in the container.
async fn sh(e: &mut Env, id: &str, script: &str) -> (i32, String, String) {
    common::exec_sh(&mut e.c, id, script, 20).await
}

/// Asserts the AppArmor label of the workload (PID 1) and of an exec'd
/// process in the container.
async fn assert_labels(e: &mut Env, id: &str, want: &str) {
    let (code, label, err) = sh(e, id, "cat /proc/1/attr/current /proc/self/attr/current").await;
    assert_eq!(
        label.lines().collect::<Vec<_>>(),
        [want, want],
        "the workload and an exec'd process (code {code}, stderr {err:?})"
    );
}

/// CAP_SYS_ADMIN and no seccomp filter: only AppArmor stands between the
/// workload and `mount`.
fn mount_capable(apparmor: Option<v1::SecurityProfile>) -> v1::LinuxContainerSecurityContext {
    v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability {
            add_capabilities: vec!["SYS_ADMIN".into()],
            ..Default::default()
        }),
        seccomp: profile(ProfileType::Unconfined, ""),
        apparmor,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_default_confines_the_workload() {
    if !ready("runtime_default_confines_the_workload") {
        return;
    }
    let mut e = env("aa-default").await;
    let mount = "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t";

    // Asked for, and by default for a non-privileged container.
    for (name, apparmor) in [
        ("asked", profile(ProfileType::RuntimeDefault, "")),
        ("implied", None),
    ] {
        let id = running(&mut e, name, mount_capable(apparmor)).await;
        assert_labels(&mut e, &id, "pvecri-default (enforce)").await;
        let (code, _, err) = sh(&mut e, &id, mount).await;
        assert_ne!(code, 0, "{name}: mount succeeded under pvecri-default");
        assert!(err.contains("Permission denied"), "{name}: {err}");
        // The profile's other denials: the host's kernel interfaces.
        let (code, _, _) = sh(&mut e, &id, "echo 1 > /proc/sys/vm/drop_caches").await;
        assert_ne!(code, 0, "{name}: wrote a vm sysctl");
    }

    // Unconfined: the same container may mount.
    let id = running(
        &mut e,
        "unconfined",
        mount_capable(profile(ProfileType::Unconfined, "")),
    )
    .await;
    assert_labels(&mut e, &id, "unconfined").await;
    let (code, _, err) = sh(&mut e, &id, mount).await;
    assert_eq!(code, 0, "unconfined mount failed: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localhost_profile_is_applied_by_name() {
    if !ready("a_localhost_profile_is_applied_by_name") {
        return;
    }
    let _profile = LoadedProfile::load(localhost_profile());
    let mut e = env("aa-localhost").await;
    let id = running(
        &mut e,
        "localhost",
        v1::LinuxContainerSecurityContext {
            apparmor: profile(ProfileType::Localhost, LOCALHOST),
            ..Default::default()
        },
    )
    .await;
    assert_labels(&mut e, &id, &format!("{LOCALHOST} (enforce)")).await;
    let (code, _, err) = sh(&mut e, &id, "echo x > /etc/pvecri-test").await;
    assert_ne!(code, 0, "wrote under /etc despite the profile");
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _, err) = sh(&mut e, &id, "echo x > /tmp/pvecri-test").await;
    assert_eq!(code, 0, "the profile allows /tmp: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimal_profile_runs_and_an_unloaded_one_is_refused() {
    if !ready("a_minimal_profile_runs_and_an_unloaded_one_is_refused") {
        return;
    }
    let _profile = LoadedProfile::load(minimal_profile());
    let mut e = env("aa-minimal").await;

    // The workload runs under a profile without capability rules, named
    // with the legacy field's `localhost/` prefix, as critest does.
    let config = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                apparmor: profile(ProfileType::Localhost, &format!("localhost/{MINIMAL}")),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..container_config("minimal", BUSYBOX, &["touch", "/tmp/foo"])
    };
    let id = create_container(&mut e.c, &e.pod_id, &e.pod, config)
        .await
        .unwrap();
    e.c.runtime
        .start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    let status = common::wait_exited(&mut e.c, &id).await;
    assert_eq!(
        status.exit_code, 0,
        "touch under {MINIMAL}: {} {}",
        status.reason, status.message
    );

    // A profile the node does not have: refused at CreateContainer,
    // naming it, and nothing is left of the container.
    let missing = "pvecri-test-not-loaded";
    let config = v1::ContainerConfig {
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                apparmor: profile(ProfileType::Localhost, missing),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..container_config("unloaded", BUSYBOX, &["true"])
    };
    let err = create_container(&mut e.c, &e.pod_id, &e.pod, config)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains(missing), "{err}");
    let listed =
        e.c.runtime
            .list_containers(v1::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(listed.len(), 1, "only the minimal container exists");
}
