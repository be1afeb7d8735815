//! Per-registry TLS and credential helpers against real registries: Debian's
//! docker-registry serving HTTPS with a throwaway CA and requiring client
//! certificates, and one behind htpasswd whose login comes from a
//! `docker-credential-*` helper script. Everything (certificates, storage,
//! scripts) lives in the test's temporary directory; the registries are
//! stopped when the test ends, however it ends.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{require_registry, require_root, skip, try_pull as pull, Daemon};
use pvecri::cri::v1;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// True when `test` can run: root, the fixture registry, and the tools
/// every test here uses plus `extra` (path, why it is missing).
fn ready(test: &str, extra: &[(&str, &str)]) -> bool {
    if !(require_root(test) && require_registry(test)) {
        return false;
    }
    let tools = [
        (
            REGISTRY_BIN,
            "docker-registry is not installed (scripts/install-deps.sh)",
        ),
        ("/usr/bin/openssl", "openssl is not installed"),
    ];
    for (tool, why) in tools.iter().chain(extra) {
        if !Path::new(tool).exists() {
            return skip(test, why);
        }
    }
    if Command::new("crane").arg("version").output().is_err() {
        return skip(
            test,
            "crane is not installed (scripts/install-cri-tools.sh)",
        );
    }
    true
}

/// A docker-registry process, stopped on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    /// Serves `storage` on a free loopback port with `http_extra` under
    /// `http:` and `top_extra` at the top of its config.
    fn start(dir: &Path, name: &str, storage: &Path, http_extra: &str, top_extra: &str) -> Self {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{http_extra}{top_extra}",
                storage.display()
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut registry = Registry { child, addr };
        // Generous: on a busy CI machine the registry can take seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return registry;
            }
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!(
                    "docker-registry ({name}) exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {}", registry.addr);
    }
}

impl Drop for Registry {
    // A throwaway registry has nothing to flush: kill it outright, so a
    // test never waits on a graceful shutdown.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the fixture busybox into `storage` through a plain-HTTP
/// registry that is gone when this returns.
fn seed(dir: &Path, storage: &Path) {
    let plain = Registry::start(dir, "seed", storage, "", "");
    let out = Command::new("crane")
        .args([
            "copy",
            "--insecure",
            &format!("127.0.0.1:5000/{BUSYBOX}"),
            &format!("{}/tls/busybox:1", plain.addr),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crane copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA, a server certificate for 127.0.0.1/localhost and a
/// client certificate, all signed by the CA, in `dir`.
fn make_certificates(dir: &Path) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(key);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pvecri test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let mut csr = vec!["req"];
        csr.extend(key);
        let (keyout, csrout, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("/CN=pvecri test {name}"),
        );
        csr.extend(["-keyout", &keyout, "-out", &csrout, "-subj", &subj]);
        openssl(dir, &csr);
        let (pem, extfile) = (format!("{name}.pem"), format!("{name}.ext"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csrout,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
        std::fs::set_permissions(dir.join(&keyout), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
}

/// A registry that speaks only TLS and only to holders of a client
/// certificate from the test CA, with the fixture busybox in it.
struct TlsRegistry {
    // Declared first so it is dropped first: the registry stops before
    // its directory goes.
    registry: Registry,
    dir: tempfile::TempDir,
}

impl TlsRegistry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certificates(d);
        let storage = d.join("data");
        seed(d, &storage);
        let tls = format!(
            "  tls:\n    certificate: {d}/server.pem\n    key: {d}/server.key\n    clientcas:\n      - {d}/ca.pem\n",
            d = d.display()
        );
        let registry = Registry::start(d, "tls", &storage, &tls, "");
        TlsRegistry { registry, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn image(&self) -> String {
        format!("{}/tls/busybox:1", self.registry.addr)
    }

    /// `[images.registries]` lines for this registry: `ca` trusts the test
    /// CA, `client` presents the client certificate.
    fn config(&self, ca: bool, client: bool, skip_verify: bool) -> String {
        let mut text = format!("[images.registries.\"{}\"]\n", self.registry.addr);
        if ca {
            text += &format!("ca_file = \"{}\"\n", self.file("ca.pem").display());
        }
        if client {
            text += &format!(
                "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
                self.file("client.pem").display(),
                self.file("client.key").display()
            );
        }
        if skip_verify {
            text += "skip_verify = true\n";
        }
        text
    }
}

async fn remove(d: &Daemon, image: &str) {
    let request = v1::RemoveImageRequest {
        image: Some(v1::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
    };
    d.client().await.image.remove_image(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_registry_needs_its_ca_and_a_client_certificate() {
    if !ready("mtls_registry_needs_its_ca_and_a_client_certificate", &[]) {
        return;
    }
    let reg = TlsRegistry::start();
    let image = reg.image();

    // The server's certificate is from a CA nobody trusts.
    let d = Daemon::start(&reg.config(false, true, false));
    let err = pull(&d, &image, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    let msg = err.message();
    assert!(
        msg.contains(&format!("https://{}", reg.registry.addr)) && msg.contains("ca_file"),
        "{msg}"
    );
    drop(d);

    // Trusting the CA is not enough: the registry wants a client certificate.
    let d = Daemon::start(&reg.config(true, false, false));
    let err = pull(&d, &image, None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    let msg = err.message();
    assert!(
        msg.contains(&reg.registry.addr) && msg.contains("client_cert_file"),
        "{msg}"
    );
    drop(d);

    let d = Daemon::start(&reg.config(true, true, false));
    let id = pull(&d, &image, None).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_verify_only_when_set() {
    if !ready("skip_verify_only_when_set", &[]) {
        return;
    }
    let reg = TlsRegistry::start();
    let image = reg.image();
    let d = Daemon::start(&reg.config(false, true, true));
    pull(&d, &image, None).await.unwrap();
    drop(d);
    let d = Daemon::start(&reg.config(false, true, false));
    let err = pull(&d, &image, None).await.unwrap_err();
    assert!(err.message().contains("certificate"), "{}", err.message());
}

/// A world-writable CA file stops the daemon at start-up, naming the file.
#[test]
fn unsafe_ca_file_stops_the_daemon() {
    if !require_root("unsafe_ca_file_stops_the_daemon") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::set_permissions(&ca, std::fs::Permissions::from_mode(0o666)).unwrap();
    let config = common::write_config(
        dir.path(),
        &format!(
            "[images.registries.\"registry.example\"]\nca_file = \"{}\"\n",
            ca.display()
        ),
    );
    let log = dir.path().join("daemon.log");
    let mut daemon = Command::new(common::BIN)
        .args(["daemon", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // A daemon that accepted the file would run on: stop it and fail.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = daemon.kill();
            let _ = daemon.wait();
            panic!("the daemon started with a world-writable ca_file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("registry.example") && stderr.contains("ca.pem"),
        "{stderr}"
    );
}

/// A registry behind htpasswd; the login comes from a credential helper
/// script, found only in the configured directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_helper_supplies_the_login() {
    if !ready(
        "credential_helper_supplies_the_login",
        &[(
            "/usr/bin/htpasswd",
            "htpasswd is not installed (apache2-utils, scripts/install-deps.sh)",
        )],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .unwrap();
    assert!(htpasswd.status.success());
    std::fs::write(d.join("htpasswd"), htpasswd.stdout).unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: pvecri-test\n    path: {}/htpasswd\n",
        d.display()
    );
    use base64::Engine;
    let login = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let crane = d.join("crane");
    std::fs::create_dir(&crane).unwrap();
    let storage = d.join("data");
    let reg = Registry::start(d, "auth", &storage, "", &auth);
    // crane's login for the push.
    std::fs::write(
        crane.join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{login}\"}}}}}}",
            reg.addr
        ),
    )
    .unwrap();
    let copy = Command::new("crane")
        .args([
            "copy",
            "--insecure",
            &format!("127.0.0.1:5000/{BUSYBOX}"),
            &format!("{}/private/busybox:1", reg.addr),
        ])
        .env("DOCKER_CONFIG", &crane)
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "crane copy: {}",
        String::from_utf8_lossy(&copy.stderr)
    );

    let helpers = d.join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    std::fs::set_permissions(&helpers, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Answers only for the registry it is asked about, and notes the
    // names of the variables it was run with. With `evil` present it
    // answers for another registry.
    let seen_env = d.join("helper-env");
    let script = format!(
        "#!/bin/sh\n\
         [ \"$1\" = get ] || exit 2\n\
         env | cut -d= -f1 > {seen_env}\n\
         read -r host\n\
         if [ \"$host\" != \"{addr}\" ]; then echo 'credentials not found in native keychain'; exit 1; fi\n\
         if [ -e {evil} ]; then host=evil.example; fi\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret\"}}' \"$host\"\n",
        seen_env = seen_env.display(),
        addr = reg.addr,
        evil = d.join("evil").display()
    );
    let helper = helpers.join("docker-credential-pvtest");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let creds = d.join("creds.json");
    std::fs::write(
        &creds,
        format!("{{\"credHelpers\":{{\"{}\":\"pvtest\"}}}}", reg.addr),
    )
    .unwrap();
    let daemon = Daemon::start(&format!(
        "[images]\ncredentials_file = \"{}\"\ncredential_helper_dir = \"{}\"\n",
        creds.display(),
        helpers.display()
    ));
    let image = format!("{}/private/busybox:1", reg.addr);

    let id = pull(&daemon, &image, None).await.unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    // The helper ran with PATH and HOME only (the shell may add its own
    // few), none of the daemon's environment.
    let env = std::fs::read_to_string(&seen_env).unwrap();
    let names: Vec<&str> = env.lines().collect();
    assert!(names.contains(&"PATH"), "{env}");
    assert!(
        names
            .iter()
            .all(|n| ["PATH", "HOME", "PWD", "OLDPWD", "SHLVL", "_"].contains(n)),
        "{env}"
    );

    // A helper that answers for another registry is not believed, and
    // its secret never reaches the error.
    std::fs::write(d.join("evil"), "").unwrap();
    remove(&daemon, &image).await;
    let err = pull(&daemon, &image, None).await.unwrap_err();
    let msg = err.message();
    assert!(
        msg.contains("credential helper") && msg.contains("evil.example"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret"), "{msg}");

    // The kubelet's credential comes first: the helper is not asked.
    std::fs::remove_file(&seen_env).unwrap();
    let kubelet = v1::AuthConfig {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    pull(&daemon, &image, Some(kubelet)).await.unwrap();
    assert!(!seen_env.exists(), "the helper ran");
    assert!(!daemon.log().contains("s3cret"), "a secret was logged");
}
