//! Docker-style credential helpers: `docker-credential-<name> get` reads a
//! registry's server URL on stdin and prints
//! `{"ServerURL": ..., "Username": ..., "Secret": ...}`; the username
//! `<token>` marks the secret as an identity (OAuth2 refresh) token.
//!
//! A helper is an operator-installed program run with the daemon's
//! privileges, so it is found only in the configured directory (or, when
//! none is configured, the daemon's `PATH`), must be root's and writable by
//! nobody else, as must every directory above it (where it was found and,
//! symlinks resolved, where it is), and runs without a shell, with an
//! environment of `PATH` and `HOME` only, under a timeout. Its output is
//! read up to a bound and never logged; its stderr is discarded, as it may
//! echo secrets.
//!
//! A helper named for a host (`credHelpers`) that cannot answer fails the
//! pull: the operator said that host needs it. The catch-all `credsStore`
//! is different: a config.json copied from a desktop names one that is
//! rarely installed on a node, and failing every pull of a public image
//! for it would help nobody, so a store that is missing, fails or hangs
//! gives no credential and a (rate-limited) warning instead. A store that
//! is unsafe to run still fails the pull.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::registry::Credential;

/// How long a helper may take (some ask a cloud metadata service).
const HELPER_TIMEOUT: Duration = Duration::from_secs(15);
/// The most stdout read from a helper; real answers are well under 8 KiB.
const OUTPUT_MAX: usize = 64 << 10;
/// The username that marks `Secret` as an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// The server URL Docker (and so every helper) files Docker Hub under.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// At most one warning this often about an unavailable `credsStore`.
const FALLBACK_WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub(crate) enum HelperError {
    #[error("credential helper {name:?} is not a valid name (only A-Z a-z 0-9 . _ -)")]
    BadName { name: String },
    #[error("credential helper docker-credential-{name} not found in {searched}")]
    NotFound { name: String, searched: String },
    #[error("credential helper {path} is not usable: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("cannot run credential helper {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential helper {path} did not answer within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("credential helper {path} failed for {host}: {status}")]
    Failed {
        path: PathBuf,
        host: String,
        status: std::process::ExitStatus,
    },
    #[error("credential helper {path} gave an unusable answer for {host}: {reason}")]
    BadOutput {
        path: PathBuf,
        host: String,
        reason: String,
    },
}

/// Which helper serves which registry, from the credentials file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HelperConfig {
    /// `credHelpers`: registry host -> helper name.
    pub per_host: HashMap<String, String>,
    /// `credsStore`: the helper for every other host.
    pub default: Option<String>,
}

impl HelperError {
    /// Whether the helper could not answer (as opposed to being unsafe to
    /// run or misnamed): what a `credsStore` may get away with.
    fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HelperError::NotFound { .. }
                | HelperError::Spawn { .. }
                | HelperError::Timeout { .. }
                | HelperError::Failed { .. }
                | HelperError::BadOutput { .. }
        )
    }
}

/// Runs the configured helpers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Helpers {
    config: HelperConfig,
    /// Where helpers are looked up; `None`: the daemon's `PATH`.
    dir: Option<PathBuf>,
    /// When the last warning about an unavailable `credsStore` was
    /// logged, and how many fallbacks happened since.
    fallback_log: Arc<Mutex<(Option<Instant>, u64)>>,
}

impl Helpers {
    pub(crate) fn new(config: HelperConfig, dir: Option<PathBuf>) -> Self {
        Helpers {
            config,
            dir,
            fallback_log: Arc::default(),
        }
    }

    /// Whether any helper is configured at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.config.per_host.is_empty() && self.config.default.is_none()
    }

    /// The credential the helper for `host` (`host[:port]`, Docker Hub as
    /// `docker.io`) has; `None` when no helper serves `host`, the helper
    /// has nothing for it, or the helper is the `credsStore` and could not
    /// answer.
    pub(crate) async fn get(&self, host: &str) -> Result<Option<Credential>, HelperError> {
        if let Some(name) = self.config.per_host.get(host) {
            return self.ask(name, host).await;
        }
        let Some(name) = &self.config.default else {
            return Ok(None);
        };
        match self.ask(name, host).await {
            Err(err) if err.is_unavailable() => {
                self.warn_fallback(host, &err);
                Ok(None)
            }
            other => other,
        }
    }

    /// Logs that the `credsStore` was passed over, at most once per
    /// [`FALLBACK_WARN_EVERY`]: every pull may get here. The error names
    /// the helper and what went wrong, never its output.
    fn warn_fallback(&self, host: &str, err: &HelperError) {
        let Ok(mut log) = self.fallback_log.lock() else {
            return;
        };
        let (last, since) = &mut *log;
        *since += 1;
        if last.is_some_and(|t| t.elapsed() < FALLBACK_WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let fallbacks = std::mem::take(since);
        tracing::warn!(
            host,
            error = %err,
            fallbacks,
            "credsStore helper unavailable: pulling without a credential"
        );
    }

    async fn ask(&self, name: &str, host: &str) -> Result<Option<Credential>, HelperError> {
        let path = self.locate(name)?;
        let server = server_url(host);
        let output = run(&path, &server).await?;
        if !output.success {
            // The protocol's "no credentials" answer is a failure whose
            // stdout says so; anything else is a broken helper.
            if String::from_utf8_lossy(&output.stdout).contains("credentials not found") {
                tracing::debug!(helper = %path.display(), host, "credential helper has nothing for this host");
                return Ok(None);
            }
            return Err(HelperError::Failed {
                path,
                host: host.to_owned(),
                status: output.status,
            });
        }
        parse_output(&output.stdout, host)
            .map(Some)
            .map_err(|reason| HelperError::BadOutput {
                path,
                host: host.to_owned(),
                reason,
            })
    }

    /// `docker-credential-<name>` in the configured directory, or the
    /// first absolute `PATH` entry that has it.
    fn locate(&self, name: &str) -> Result<PathBuf, HelperError> {
        if !is_valid_name(name) {
            return Err(HelperError::BadName {
                name: name.to_owned(),
            });
        }
        let file = format!("docker-credential-{name}");
        let dirs: Vec<PathBuf> = match &self.dir {
            Some(dir) => vec![dir.clone()],
            None => std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        };
        let found = dirs
            .iter()
            .filter(|d| d.is_absolute())
            .map(|d| d.join(&file))
            .find(|p| p.is_file());
        match found {
            Some(path) => check_owner(&path),
            None => Err(HelperError::NotFound {
                name: name.to_owned(),
                searched: match &self.dir {
                    Some(dir) => dir.display().to_string(),
                    None => "PATH".to_owned(),
                },
            }),
        }
    }
}

/// A helper name as it may appear in `docker-credential-<name>`.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// What the helper is asked for: Docker Hub under Docker's own server URL,
/// any other registry as its bare host.
fn server_url(host: &str) -> String {
    if host == "docker.io" {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        host.to_owned()
    }
}

/// The helper to run: `found` with its symlinks resolved, once it and
/// every directory above it (above where it was found, and above where it
/// really is) are root's and writable by nobody else, and it is
/// executable: anyone who could replace any of them would get registry
/// credentials and run code as root. Running the resolved path keeps a
/// symlink swapped after the check from mattering.
fn check_owner(found: &Path) -> Result<PathBuf, HelperError> {
    let unsafe_helper = |reason: String| HelperError::Unsafe {
        path: found.to_owned(),
        reason,
    };
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).map_err(|e| unsafe_helper(format!("{}: {e}", p.display())))
    };
    let real = resolve(found)?;
    let found_in = resolve(found.parent().unwrap_or(Path::new("/")))?;
    for p in real.ancestors().chain(found_in.ancestors()) {
        // Resolved paths have no symlinks left, so this is the entry itself.
        let meta = std::fs::symlink_metadata(p)
            .map_err(|e| unsafe_helper(format!("{}: {e}", p.display())))?;
        let mode = meta.mode();
        // A sticky directory (/tmp) lets others add entries but not
        // rename or remove root's, so the path below it stays root's.
        let shared_but_sticky = meta.is_dir() && mode & 0o1000 != 0;
        if meta.uid() != 0 || (mode & 0o022 != 0 && !shared_but_sticky) {
            return Err(unsafe_helper(format!(
                "{} is not root's alone (uid {}, mode {:o})",
                p.display(),
                meta.uid(),
                mode & 0o7777
            )));
        }
    }
    let mode = std::fs::metadata(&real).map(|m| m.mode()).unwrap_or(0);
    if mode & 0o100 == 0 {
        return Err(unsafe_helper("not executable".to_owned()));
    }
    Ok(real)
}

struct Output {
    success: bool,
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
}

async fn run(path: &Path, server: &str) -> Result<Output, HelperError> {
    let spawn_error = |source| HelperError::Spawn {
        path: path.to_owned(),
        source,
    };
    let mut command = tokio::process::Command::new(path);
    command
        .arg("get")
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // Helpers that keep their own state (cloud CLIs' config) look in HOME.
    if let Some(home) = std::env::var_os("HOME") {
        command.env("HOME", home);
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    let talk = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input is fine.
            let _ = stdin.write_all(server.as_bytes()).await;
        }
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            out.take(OUTPUT_MAX as u64 + 1)
                .read_to_end(&mut stdout)
                .await?;
        }
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, stdout))
    };
    let (status, stdout) = tokio::time::timeout(HELPER_TIMEOUT, talk)
        .await
        .map_err(|_| HelperError::Timeout {
            path: path.to_owned(),
            timeout: HELPER_TIMEOUT,
        })?
        .map_err(spawn_error)?;
    if stdout.len() > OUTPUT_MAX {
        return Err(HelperError::BadOutput {
            path: path.to_owned(),
            host: server.to_owned(),
            reason: format!("more than {OUTPUT_MAX} bytes of output"),
        });
    }
    Ok(Output {
        success: status.success(),
        status,
        stdout,
    })
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The credential in a helper's answer for `host`. The reason for a
/// refusal never quotes the output, which holds the secret.
fn parse_output(stdout: &[u8], host: &str) -> Result<Credential, String> {
    if stdout.len() > OUTPUT_MAX {
        return Err(format!("more than {OUTPUT_MAX} bytes of output"));
    }
    let answer: Answer = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "not the expected JSON object (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    // Some helpers leave ServerURL out; one that names another registry
    // answered a different question.
    let same_host =
        |url: &str| super::auth_file::normalise_host(url) == super::auth_file::normalise_host(host);
    if !answer.server_url.is_empty() && !same_host(&answer.server_url) {
        return Err(format!(
            "it is for {:?}, not {host}",
            answer.server_url.chars().take(256).collect::<String>()
        ));
    }
    let printable = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
    if !printable(&answer.secret) {
        return Err("Secret is empty or has control characters".to_owned());
    }
    if answer.username == TOKEN_USERNAME {
        return Ok(Credential::IdentityToken(answer.secret));
    }
    if !printable(&answer.username) || answer.username.contains(':') {
        return Err("Username is empty, has control characters or a ':'".to_owned());
    }
    Ok(Credential::Basic {
        username: answer.username,
        password: answer.secret,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn helper_names_are_plain_file_name_parts() {
        for good in ["pass", "ecr-login", "gcr", "osxkeychain", "a.b_c-1"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a b",
            "x;rm",
            "$(id)",
            ".hidden",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn answers_become_credentials() {
        let basic = parse_output(
            br#"{"ServerURL":"registry.example.com","Username":"u","Secret":"s"}"#,
            "registry.example.com",
        )
        .unwrap();
        assert_eq!(
            basic,
            Credential::Basic {
                username: "u".into(),
                password: "s".into()
            }
        );
        let token = parse_output(
            br#"{"ServerURL":"https://index.docker.io/v1/","Username":"<token>","Secret":"r3fresh"}"#,
            "docker.io",
        )
        .unwrap();
        assert_eq!(token, Credential::IdentityToken("r3fresh".into()));
        let no_url = parse_output(br#"{"Username":"u","Secret":"s"}"#, "h").unwrap();
        assert!(matches!(no_url, Credential::Basic { .. }));
    }

    #[test]
    fn hostile_answers_are_refused_without_echoing_secrets() {
        let huge = vec![b' '; OUTPUT_MAX + 1];
        assert!(parse_output(&huge, "h").unwrap_err().contains("bytes"));
        let err = parse_output(b"user:hunter2", "h").unwrap_err();
        assert!(err.contains("JSON") && !err.contains("hunter2"), "{err}");
        let err = parse_output(
            br#"{"ServerURL":"evil.example","Username":"u","Secret":"hunter2"}"#,
            "registry.example.com",
        )
        .unwrap_err();
        assert!(
            err.contains("evil.example") && !err.contains("hunter2"),
            "{err}"
        );
        for bad in [
            r#"{"ServerURL":"h","Username":"u","Secret":""}"#,
            r#"{"ServerURL":"h","Username":"","Secret":"s"}"#,
            r#"{"ServerURL":"h","Username":"u\n","Secret":"s"}"#,
            r#"{"ServerURL":"h","Username":"a:b","Secret":"s"}"#,
            r#"{"ServerURL":"h","Username":"u","Secret":"s\r\nX-Evil: 1"}"#,
            r#"["u","s"]"#,
        ] {
            assert!(parse_output(bad.as_bytes(), "h").is_err(), "{bad}");
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// `name` as the `credHelpers` entry of the hosts the tests ask for.
    fn helpers(dir: &Path, name: &str) -> Helpers {
        let per_host = ["h", "reg.lan:5000"]
            .into_iter()
            .map(|h| (h.to_owned(), name.to_owned()))
            .collect();
        Helpers::new(
            HelperConfig {
                per_host,
                default: None,
            },
            Some(dir.to_owned()),
        )
    }

    /// `name` as the `credsStore`.
    fn store(dir: &Path, name: &str) -> Helpers {
        Helpers::new(
            HelperConfig {
                per_host: HashMap::new(),
                default: Some(name.to_owned()),
            },
            Some(dir.to_owned()),
        )
    }

    /// Whether the test can run: helpers must be root's. CI runs as root,
    /// so there a skip is a failure.
    fn running_as_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but not root: helper ownership cannot be tested"
        );
        eprintln!("skipping: helpers must be root's and the test files are this user's");
        false
    }

    #[test]
    fn answers_for_docker_hub_under_any_of_its_names_are_accepted() {
        for (server, host) in [
            ("registry-1.docker.io", "registry-1.docker.io"),
            ("https://index.docker.io/v1/", "registry-1.docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
        ] {
            let answer = format!(r#"{{"ServerURL":"{server}","Username":"u","Secret":"s"}}"#);
            assert!(
                parse_output(answer.as_bytes(), host).is_ok(),
                "{server} for {host}"
            );
        }
        let other = br#"{"ServerURL":"ghcr.io","Username":"u","Secret":"s"}"#;
        assert!(parse_output(other, "registry-1.docker.io").is_err());
    }

    /// A `credsStore` that is not installed gives no credential (public
    /// images still pull); a `credHelpers` entry for the host does not.
    #[tokio::test]
    async fn a_missing_store_is_passed_over_but_a_missing_host_helper_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store(dir.path(), "desktop").get("h").await.unwrap(), None);
        let err = helpers(dir.path(), "desktop").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_failing_store_is_passed_over_but_an_unsafe_one_is_not() {
        if !running_as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "broken", "exit 2");
        assert_eq!(store(dir.path(), "broken").get("h").await.unwrap(), None);
        let err = helpers(dir.path(), "broken").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::Failed { .. }), "{err}");
        script(dir.path(), "garbled", "echo not-json");
        assert_eq!(store(dir.path(), "garbled").get("h").await.unwrap(), None);
        let writable = script(dir.path(), "writable", "exit 0");
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = store(dir.path(), "writable").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::Unsafe { .. }), "{err}");
    }

    /// Ownership is checked where a symlinked helper really is, and on
    /// every directory above it, not only next to the link.
    #[tokio::test]
    async fn helpers_are_checked_where_they_really_are() {
        if !running_as_root() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let found_in = root.path().join("bin");
        let real_dir = root.path().join("opt/real");
        std::fs::create_dir_all(&found_in).unwrap();
        std::fs::create_dir_all(&real_dir).unwrap();
        let real = script(&real_dir, "real", r#"echo '{"Username":"u","Secret":"s"}'"#);
        let link = found_in.join("docker-credential-linked");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let ok = helpers(&found_in, "linked").get("h").await.unwrap();
        assert!(matches!(ok, Some(Credential::Basic { .. })), "{ok:?}");
        assert_eq!(check_owner(&link).unwrap(), real.canonicalize().unwrap());

        // The link's directory is root's; the target's is not.
        std::os::unix::fs::chown(&real_dir, Some(1000), None).unwrap();
        let err = helpers(&found_in, "linked").get("h").await.unwrap_err();
        assert!(
            matches!(&err, HelperError::Unsafe { reason, .. } if reason.contains("opt/real")),
            "{err}"
        );
        std::os::unix::fs::chown(&real_dir, Some(0), None).unwrap();

        // A directory further up that its group may write.
        let opt = root.path().join("opt");
        std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o775)).unwrap();
        let err = helpers(&found_in, "linked").get("h").await.unwrap_err();
        assert!(
            matches!(&err, HelperError::Unsafe { reason, .. } if reason.contains("775")),
            "{err}"
        );
        std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o755)).unwrap();

        // The helper file itself owned by someone else.
        std::os::unix::fs::chown(&real, Some(1000), None).unwrap();
        let err = helpers(&found_in, "linked").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::Unsafe { .. }), "{err}");
    }

    /// Real processes: the host arrives on stdin, the environment is
    /// clean, "not found" is no credential, a hang is a timeout-bounded
    /// error, and a bad name never reaches the file system.
    #[tokio::test]
    async fn helpers_run_as_documented() {
        if !running_as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echo",
            r#"read host; [ "$1" = get ] || exit 3; [ -z "$SECRET_ENV" ] || exit 4
printf '{"ServerURL":"%s","Username":"u","Secret":"s-%s"}' "$host" "$host""#,
        );
        std::env::set_var("SECRET_ENV", "leak");
        let got = helpers(dir.path(), "echo").get("reg.lan:5000").await;
        assert_eq!(
            got.unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "s-reg.lan:5000".into()
            })
        );
        script(
            dir.path(),
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        assert_eq!(helpers(dir.path(), "none").get("h").await.unwrap(), None);
        script(dir.path(), "broken", "echo oops >&2; exit 2");
        let err = helpers(dir.path(), "broken").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::Failed { .. }), "{err}");
        let err = helpers(dir.path(), "../../bin/sh")
            .get("h")
            .await
            .unwrap_err();
        assert!(matches!(err, HelperError::BadName { .. }), "{err}");
        let err = helpers(dir.path(), "missing").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::NotFound { .. }), "{err}");
        let writable = script(dir.path(), "writable", "exit 0");
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = helpers(dir.path(), "writable").get("h").await.unwrap_err();
        assert!(matches!(err, HelperError::Unsafe { .. }), "{err}");
        script(dir.path(), "flood", "yes '{}'");
        let err = helpers(dir.path(), "flood").get("h").await.unwrap_err();
        assert!(err.to_string().contains("bytes of output"), "{err}");
    }
}
