//! CNI mode: the plugins of the first network config list in the config
//! directory, run per the CNI spec (ADD on RunPodSandbox, DEL on stop and
//! remove, in reverse order, with the cached result as `prevResult`).
//!
//! The config is looked up again whenever it is needed and none is loaded,
//! so a config that a network add-on installs later is picked up without a
//! restart. What ADD was run with (the whole list) and its result are stored
//! before the first plugin runs and deleted after DEL: DEL after a daemon
//! crash or restart uses exactly the config ADD used.
//!
//! Plugins are separate executables by design of CNI; running them is the
//! cost of this mode (built-in mode runs nothing).
//!
//! The verbs that need no pod come with the spec version that introduced
//! them, and a list asks for them through its `cniVersion`: CHECK
//! (0.4.0) for a stored attachment, GC and STATUS (1.1.0) for the list as a
//! whole. A list whose version predates a verb never gets it, and
//! `disableCheck` / `disableGC` turn the first two off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use super::nft::HostPort;
use crate::store::Record;

/// A plugin that has not answered after this long is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// At most this much of a plugin's stdout (its result) is read; a plugin
/// that writes more is killed and its run fails. Real results are a few
/// KiB.
const MAX_OUTPUT: usize = 1 << 20;

/// This much of a plugin's stderr is kept, the rest read and dropped: a
/// plugin logging at debug level must not fail a run that succeeded, and
/// an error message only needs the start.
const STDERR_KEPT: usize = 64 << 10;

/// The interface CNI plugins create in the pod.
const IFNAME: &str = "eth0";

#[derive(Debug, Error)]
pub(crate) enum CniError {
    #[error("no CNI network config (*.conflist, *.conf, *.json) in {0}")]
    NoConfig(PathBuf),
    #[error("invalid CNI config {path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    NoPlugin { plugin: String, dirs: String },
    #[error("CNI plugin type {0:?} is not a plain file name")]
    BadPluginName(String),
    #[error("cannot run CNI plugin {plugin}")]
    Spawn {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the config to CNI plugin {plugin} {command}")]
    Stdin {
        plugin: String,
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the output of CNI plugin {plugin} {command}")]
    Output {
        plugin: String,
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} timed out after {after:?}")]
    Timeout {
        plugin: String,
        command: &'static str,
        after: Duration,
    },
    #[error("CNI plugin {plugin} {command} failed{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Failed {
        plugin: String,
        command: &'static str,
        /// The error code of the plugin's error result, when it gave one.
        code: Option<u64>,
        message: String,
    },
    #[error("CNI plugin {plugin} {command} wrote more than {MAX_OUTPUT} bytes to stdout")]
    OutputTooLarge {
        plugin: String,
        command: &'static str,
    },
    #[error("CNI GC of network {network}: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Gc {
        network: String,
        errors: Vec<CniError>,
    },
}

/// The highest spec version pvecri speaks.
const MAX_VERSION: Version = Version(1, 1, 0);
/// CHECK came with 0.4.0.
const CHECK_SINCE: Version = Version(0, 4, 0);
/// GC and STATUS came with 1.1.0.
const GC_STATUS_SINCE: Version = Version(1, 1, 0);

/// A CNI spec version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u32, u32, u32);

impl Version {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, '.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        Some(Version(major, minor, patch))
    }
}

/// A loaded network config list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ConfList {
    pub path: PathBuf,
    pub name: String,
    /// The version the plugins are run with: the highest of `cniVersions`
    /// pvecri speaks, else `cniVersion`.
    pub cni_version: String,
    pub plugins: Vec<Value>,
    /// `disableCheck`: CHECK must not run for this list.
    #[serde(default)]
    pub disable_check: bool,
    /// `disableGC`: GC must not run for this list.
    #[serde(default)]
    pub disable_gc: bool,
}

impl ConfList {
    fn version_at_least(&self, since: Version) -> bool {
        Version::parse(&self.cni_version).is_some_and(|v| v >= since)
    }

    /// Whether CHECK runs for attachments of this list.
    pub(crate) fn wants_check(&self) -> bool {
        !self.disable_check && self.version_at_least(CHECK_SINCE)
    }

    /// Whether GC runs for this list.
    pub(crate) fn wants_gc(&self) -> bool {
        !self.disable_gc && self.version_at_least(GC_STATUS_SINCE)
    }

    /// Whether STATUS runs for this list.
    pub(crate) fn wants_status(&self) -> bool {
        self.version_at_least(GC_STATUS_SINCE)
    }
}

/// Reads the first config (by file name) in `dir`.
pub(crate) fn load(dir: &Path) -> Result<ConfList, CniError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|_| CniError::NoConfig(dir.to_owned()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    let path = files
        .into_iter()
        .next()
        .ok_or_else(|| CniError::NoConfig(dir.to_owned()))?;
    let bad = |message: String| CniError::BadConfig {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    parse(path.clone(), value).map_err(|e| bad(e.to_string()))
}

/// What makes a network configuration file unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum ConfError {
    #[error("`name` is missing")]
    NoName,
    #[error("`plugins` is not a list")]
    PluginsNotAList,
    #[error("`plugins` is empty")]
    NoPlugins,
    #[error("a plugin has no `type`")]
    PluginWithoutType,
    #[error("`{0}` is not a boolean")]
    NotABool(&'static str),
}

fn parse(path: PathBuf, value: Value) -> Result<ConfList, ConfError> {
    let name = value["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or(ConfError::NoName)?
        .to_owned();
    let mut cni_version = value["cniVersion"].as_str().unwrap_or("0.2.0").to_owned();
    // `cniVersions` (1.1.0): the list speaks all of them; the highest one
    // pvecri speaks too is used.
    if let Some(Value::Array(versions)) = value.get("cniVersions") {
        if let Some(best) = versions
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|t| Version::parse(t).map(|v| (v, t)))
            .filter(|(v, _)| *v <= MAX_VERSION)
            .max_by_key(|(v, _)| *v)
        {
            cni_version = best.1.to_owned();
        }
    }
    let flag = |key: &'static str| match value.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ConfError::NotABool(key)),
    };
    let disable_check = flag("disableCheck")?;
    let disable_gc = flag("disableGC")?;
    // A single-plugin `.conf` is a list of one.
    let plugins = match value.get("plugins") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err(ConfError::PluginsNotAList),
        None => vec![value.clone()],
    };
    if plugins.is_empty() {
        return Err(ConfError::NoPlugins);
    }
    for p in &plugins {
        if p["type"].as_str().is_none_or(str::is_empty) {
            return Err(ConfError::PluginWithoutType);
        }
    }
    Ok(ConfList {
        path,
        name,
        cni_version,
        plugins,
        disable_check,
        disable_gc,
    })
}

/// What ADD ran with and returned, kept for DEL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CniAttachment {
    pub pod_id: String,
    pub netns: String,
    pub args: String,
    pub conf: ConfList,
    pub host_ports: Vec<HostPort>,
    /// The pod's DNS config, for plugins with the `dns` capability.
    #[serde(default)]
    pub dns: Option<crate::pod::record::Dns>,
    /// Limits from the pod's bandwidth annotations, for plugins with the
    /// `bandwidth` capability.
    #[serde(default)]
    pub bandwidth: Option<super::bandwidth::Bandwidth>,
    pub result: Option<Value>,
}

impl Record for CniAttachment {
    const TABLE: &'static str = "cni_attachments";
    fn key(&self) -> String {
        self.pod_id.clone()
    }
}

/// Counts one list operation in `pvecri_cni_operations_total`.
fn count<T>(command: &str, result: &Result<T, CniError>) {
    let outcome = if result.is_ok() { "success" } else { "failure" };
    crate::metrics::global()
        .cni_operations
        .with_label_values(&[command, outcome])
        .inc();
}

/// Runs plugin lists from the configured binary directories.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    pub bin_dirs: Vec<PathBuf>,
    /// How long one plugin run may take, writing its stdin included.
    timeout: Duration,
}

impl Runner {
    pub(crate) fn new(bin_dirs: Vec<PathBuf>) -> Self {
        Self {
            bin_dirs,
            timeout: PLUGIN_TIMEOUT,
        }
    }

    /// The same runner with a shorter time limit, for tests.
    #[cfg(test)]
    pub(super) fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    /// ADD through every plugin; returns the final result.
    pub(crate) async fn add(&self, a: &CniAttachment) -> Result<Value, CniError> {
        let result = self.add_all(a).await;
        count("ADD", &result);
        result
    }

    async fn add_all(&self, a: &CniAttachment) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for plugin in &a.conf.plugins {
            let config = self.plugin_config(a, plugin, prev.as_ref());
            let out = self
                .exec("ADD", Target::Attachment(a), plugin, &config)
                .await?;
            let result: Value = serde_json::from_slice(&out).map_err(|e| CniError::Failed {
                plugin: plugin_type(plugin).to_owned(),
                command: "ADD",
                code: None,
                message: format!("result is not JSON: {e}"),
            })?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through every plugin in reverse; every plugin is tried, the
    /// first failure is returned.
    pub(crate) async fn del(&self, a: &CniAttachment) -> Result<(), CniError> {
        let mut first_error = None;
        for plugin in a.conf.plugins.iter().rev() {
            let config = self.plugin_config(a, plugin, a.result.as_ref());
            if let Err(e) = self
                .exec("DEL", Target::Attachment(a), plugin, &config)
                .await
            {
                first_error.get_or_insert(e);
            }
        }
        let result = first_error.map_or(Ok(()), Err);
        count("DEL", &result);
        result
    }

    /// CHECK through every plugin in order, each with the final ADD result
    /// as `prevResult`; stops at the first failure. Does nothing when the
    /// list's version predates CHECK, it sets `disableCheck`, or ADD never
    /// completed (the spec allows CHECK only after a successful ADD).
    pub(crate) async fn check(&self, a: &CniAttachment) -> Result<(), CniError> {
        let Some(result) = a.result.as_ref().filter(|_| a.conf.wants_check()) else {
            return Ok(());
        };
        let mut outcome = Ok(());
        for plugin in &a.conf.plugins {
            let config = self.plugin_config(a, plugin, Some(result));
            outcome = self
                .exec("CHECK", Target::Attachment(a), plugin, &config)
                .await
                .map(|_| ());
            if outcome.is_err() {
                break;
            }
        }
        count("CHECK", &outcome);
        outcome
    }

    /// GC through every plugin of `conf`, telling them that the pods in
    /// `valid` (their sandbox IDs, as CNI_CONTAINERID at ADD) still hold
    /// attachments; every plugin runs, all failures are returned. Does
    /// nothing when the list's version predates GC or it sets `disableGC`.
    pub(crate) async fn gc(&self, conf: &ConfList, valid: &[String]) -> Result<(), CniError> {
        if !conf.wants_gc() {
            return Ok(());
        }
        let attachments: Vec<Value> = valid
            .iter()
            .map(|id| json!({"containerID": id, "ifname": IFNAME}))
            .collect();
        let mut errors = Vec::new();
        for plugin in &conf.plugins {
            let mut config = network_config(conf, plugin);
            config["cni.dev/valid-attachments"] = Value::Array(attachments.clone());
            if let Err(e) = self.exec("GC", Target::Network, plugin, &config).await {
                errors.push(e);
            }
        }
        let result = if errors.is_empty() {
            Ok(())
        } else {
            Err(CniError::Gc {
                network: conf.name.clone(),
                errors,
            })
        };
        count("GC", &result);
        result
    }

    /// STATUS through every plugin of `conf`: `Ok` when all of them can
    /// take ADD requests, else the first plugin's refusal. `Ok` without
    /// running anything when the list's version predates STATUS.
    pub(crate) async fn status(&self, conf: &ConfList) -> Result<(), CniError> {
        if !conf.wants_status() {
            return Ok(());
        }
        let mut outcome = Ok(());
        for plugin in &conf.plugins {
            let config = network_config(conf, plugin);
            outcome = self
                .exec("STATUS", Target::Network, plugin, &config)
                .await
                .map(|_| ());
            if outcome.is_err() {
                break;
            }
        }
        count("STATUS", &outcome);
        outcome
    }

    /// One plugin's stdin: its own object plus the list's name and version,
    /// the previous result and the capability arguments it asks for.
    fn plugin_config(&self, a: &CniAttachment, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut config = plugin.clone();
        config["name"] = json!(a.conf.name);
        config["cniVersion"] = json!(a.conf.cni_version);
        if let Some(prev) = prev {
            config["prevResult"] = prev.clone();
        }
        let wants = |cap: &str| plugin["capabilities"][cap].as_bool() == Some(true);
        let mut runtime = serde_json::Map::new();
        if wants("portMappings") && !a.host_ports.is_empty() {
            // One entry per mapping: pvecri keeps a DNAT entry per address
            // family, the plugin maps both families itself.
            let mut seen = std::collections::HashSet::new();
            let ports: Vec<Value> = a
                .host_ports
                .iter()
                .filter(|p| seen.insert((p.protocol, p.host_port, p.container_port, p.host_ip)))
                .map(|p| {
                    json!({
                        "hostPort": p.host_port,
                        "containerPort": p.container_port,
                        "protocol": p.protocol.keyword(),
                        "hostIP": p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    })
                })
                .collect();
            runtime.insert("portMappings".into(), Value::Array(ports));
        }
        if let Some(b) = a.bandwidth.filter(|_| wants("bandwidth")) {
            // As containerd: the rate asked for, and a burst so large it
            // never limits.
            let mut limits = serde_json::Map::new();
            for (rate, burst, value) in [
                ("ingressRate", "ingressBurst", b.ingress),
                ("egressRate", "egressBurst", b.egress),
            ] {
                if let Some(v) = value {
                    limits.insert(rate.into(), json!(v));
                    limits.insert(burst.into(), json!(u32::MAX));
                }
            }
            runtime.insert("bandwidth".into(), Value::Object(limits));
        }
        if let Some(dns) = a.dns.as_ref().filter(|_| wants("dns")) {
            runtime.insert(
                "dns".into(),
                json!({
                    "servers": dns.servers,
                    "searches": dns.searches,
                    "options": dns.options,
                }),
            );
        }
        if !runtime.is_empty() {
            config["runtimeConfig"] = Value::Object(runtime);
        }
        config
    }

    fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        // A plugin `type` names a file in a bin dir, never a path: `/` or
        // `..` would run a binary outside the configured dirs.
        if !is_plugin_name(plugin) {
            return Err(CniError::BadPluginName(plugin.to_owned()));
        }
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::NoPlugin {
                plugin: plugin.to_owned(),
                dirs: self.path_var(),
            })
    }

    fn path_var(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    async fn exec(
        &self,
        command: &'static str,
        target: Target<'_>,
        plugin: &Value,
        config: &Value,
    ) -> Result<Vec<u8>, CniError> {
        let name = plugin_type(plugin).to_owned();
        let exe = self.find(&name)?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", self.path_var())
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        if let Target::Attachment(a) = target {
            cmd.env("CNI_CONTAINERID", &a.pod_id)
                .env("CNI_NETNS", &a.netns)
                .env("CNI_IFNAME", IFNAME)
                .env("CNI_ARGS", &a.args);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| CniError::Spawn {
                plugin: name.clone(),
                source,
            })?;
        let input = serde_json::to_vec(config).unwrap_or_default();
        // The time limit covers writing stdin too: GC's input grows with
        // the pods, and a plugin that never reads it would otherwise block
        // the write (and GC, and every ADD waiting for it) for good.
        let ran = tokio::time::timeout(self.timeout, communicate(&mut child, input)).await;
        let out = match ran {
            Ok(Ok(out)) => out,
            Ok(Err(failure)) => {
                // Killed and reaped here rather than left to `kill_on_drop`,
                // which does not wait for it.
                let _ = child.kill().await;
                return Err(failure.into_error(name, command));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(CniError::Timeout {
                    plugin: name,
                    command,
                    after: self.timeout,
                });
            }
        };
        if out.status.success() {
            return Ok(out.stdout);
        }
        // Errors come as {"code": n, "msg": "...", "details": "..."} on stdout.
        let error = serde_json::from_slice::<Value>(&out.stdout).ok();
        let code = error.as_ref().and_then(|v| v["code"].as_u64());
        let message = error
            .and_then(|v| {
                let msg = v["msg"].as_str()?.to_owned();
                Some(match v["details"].as_str() {
                    Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                    _ => msg,
                })
            })
            .unwrap_or_else(|| stderr_message(&out.stderr, out.status));
        Err(CniError::Failed {
            plugin: name,
            command,
            code,
            message,
        })
    }
}

/// A failed plugin's stderr as an error message: its first line (a Go
/// panic's stack trace follows its first line), else the exit status.
fn stderr_message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        None => status.to_string(),
        Some(first) => match lines.count() {
            0 => first.to_owned(),
            more => format!("{first} ({more} more lines on stderr)"),
        },
    }
}

/// What a plugin left.
struct Output {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    /// The first [`STDERR_KEPT`] bytes.
    stderr: Vec<u8>,
}

/// Why [`communicate`] gave up on a plugin, which is then killed.
#[derive(Debug)]
enum RunFailure {
    Stdin(std::io::Error),
    Output(std::io::Error),
    /// More than [`MAX_OUTPUT`] on stdout.
    TooLarge,
}

impl RunFailure {
    fn into_error(self, plugin: String, command: &'static str) -> CniError {
        match self {
            RunFailure::Stdin(source) => CniError::Stdin {
                plugin,
                command,
                source,
            },
            RunFailure::Output(source) => CniError::Output {
                plugin,
                command,
                source,
            },
            RunFailure::TooLarge => CniError::OutputTooLarge { plugin, command },
        }
    }
}

/// Writes `input` to the child's stdin while reading its stdout and
/// stderr, then waits for it. All three at once: a plugin may fill its
/// output pipes before it reads all its input, and either side would then
/// wait for the other. Stdout beyond [`MAX_OUTPUT`] ends the run at once,
/// so that a plugin writing without end fills neither memory nor the time
/// limit; stderr is read to its end, of which [`STDERR_KEPT`] is kept.
async fn communicate(
    child: &mut tokio::process::Child,
    input: Vec<u8>,
) -> Result<Output, RunFailure> {
    let (stdin, stdout, mut stderr) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let write = async move {
        use tokio::io::AsyncWriteExt;
        let Some(mut stdin) = stdin else {
            return Ok(());
        };
        match stdin.write_all(&input).await {
            // A plugin may exit without reading all of its input; its exit
            // status and result say how it went.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(RunFailure::Stdin),
        }
        // `stdin` is dropped here: the plugin reads end of file.
    };
    let stdout = async {
        let kept = read_kept(stdout, MAX_OUTPUT + 1)
            .await
            .map_err(RunFailure::Output)?;
        if kept.len() > MAX_OUTPUT {
            return Err(RunFailure::TooLarge);
        }
        Ok(kept)
    };
    let stderr = async {
        let kept = read_kept(stderr.as_mut(), STDERR_KEPT)
            .await
            .map_err(RunFailure::Output)?;
        if let Some(rest) = stderr.as_mut() {
            tokio::io::copy(rest, &mut tokio::io::sink())
                .await
                .map_err(RunFailure::Output)?;
        }
        Ok(kept)
    };
    let ((), stdout, stderr) = tokio::try_join!(write, stdout, stderr)?;
    let status = child.wait().await.map_err(RunFailure::Output)?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// The first `limit` bytes of `stream` (all of it when shorter); what
/// follows is left unread.
async fn read_kept<R: tokio::io::AsyncRead + Unpin>(
    stream: Option<R>,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    if let Some(stream) = stream {
        stream.take(limit as u64).read_to_end(&mut kept).await?;
    }
    Ok(kept)
}

/// Who a plugin runs for: one attachment (ADD, DEL, CHECK, with the
/// attachment's parameters in the environment), or the network as a whole
/// (GC, STATUS), which has none.
#[derive(Clone, Copy)]
enum Target<'a> {
    Attachment(&'a CniAttachment),
    Network,
}

/// A plugin's stdin for GC and STATUS: its object with the list's name
/// and version, and nothing of any attachment.
fn network_config(conf: &ConfList, plugin: &Value) -> Value {
    let mut config = plugin.clone();
    config["name"] = json!(conf.name);
    config["cniVersion"] = json!(conf.cni_version);
    config
}

fn plugin_type(plugin: &Value) -> &str {
    plugin["type"].as_str().unwrap_or_default()
}

/// The pod addresses of a result, IPv4 first (`ips[].address` in CNI
/// 0.3.0 and later, `ip4`/`ip6` in 0.2.0).
pub(crate) fn result_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = match result["ips"].as_array() {
        Some(list) => list
            .iter()
            .filter_map(|ip| ip["address"].as_str())
            .map(|a| a.split('/').next().unwrap_or(a).to_owned())
            .collect(),
        None => ["ip4", "ip6"]
            .iter()
            .filter_map(|k| result[*k]["ip"].as_str())
            .map(|a| a.split('/').next().unwrap_or(a).to_owned())
            .collect(),
    };
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

/// A CNI plugin `type`: a plain file name (no separator, not `.` or `..`,
/// no NUL).
pub(crate) fn is_plugin_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_types_are_file_names_in_the_bin_dirs() {
        for good in ["bridge", "host-local", "portmap", "my.plugin"] {
            assert!(is_plugin_name(good), "{good}");
        }
        for bad in ["", ".", "..", "../bin/sh", "/bin/sh", "a/b", "x\0y"] {
            assert!(!is_plugin_name(bad), "{bad:?}");
        }
        let runner = Runner::new(vec![PathBuf::from("/usr/lib/cni")]);
        assert!(matches!(
            runner.find("../../bin/sh"),
            Err(CniError::BadPluginName(_))
        ));
    }
    use crate::pod::record::Proto;

    #[test]
    fn the_first_config_by_name_is_loaded_and_a_single_conf_is_a_list() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Err(CniError::NoConfig(_))));
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        std::fs::write(
            dir.path().join("20-b.conf"),
            r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let list = load(dir.path()).unwrap();
        assert_eq!(list.name, "a");
        assert_eq!(list.plugins.len(), 2);
        std::fs::remove_file(dir.path().join("10-a.conflist")).unwrap();
        let single = load(dir.path()).unwrap();
        assert_eq!(single.name, "b");
        assert_eq!(single.cni_version, "0.4.0");
        assert_eq!(single.plugins[0]["type"], "bridge");
        std::fs::write(
            dir.path().join("05-bad.json"),
            r#"{"name":"x","plugins":[{}]}"#,
        )
        .unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("05-bad.json") && err.contains("type"), "{err}");
    }

    #[test]
    fn plugin_stdin_carries_name_version_prev_result_and_capabilities() {
        let conf = parse(
            PathBuf::from("/x.conflist"),
            json!({"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"bridge"},
                {"type":"portmap","capabilities":{"portMappings":true,"dns":true}},
                {"type":"bandwidth","capabilities":{"bandwidth":true}}]}),
        )
        .unwrap();
        let a = CniAttachment {
            pod_id: "p".into(),
            netns: "/run/ns".into(),
            args: String::new(),
            conf: conf.clone(),
            // A mapping without a host IP is kept once per family.
            host_ports: ["0.0.0.0", "::"]
                .iter()
                .map(|ip| HostPort {
                    protocol: Proto::Udp,
                    host_ip: None,
                    host_port: 53,
                    pod_ip: ip.parse().unwrap(),
                    container_port: 5353,
                })
                .collect(),
            dns: Some(crate::pod::record::Dns {
                servers: vec!["10.0.0.10".into()],
                searches: vec![],
                options: vec!["ndots:5".into()],
            }),
            bandwidth: Some(crate::network::bandwidth::Bandwidth {
                ingress: Some(1_000_000),
                egress: None,
            }),
            result: None,
        };
        let runner = Runner::new(vec![]);
        let first = runner.plugin_config(&a, &conf.plugins[0], None);
        assert_eq!(first["name"], "net");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none());
        let prev = json!({"ips":[{"address":"10.0.0.2/24"}]});
        let second = runner.plugin_config(&a, &conf.plugins[1], Some(&prev));
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"]["portMappings"],
            json!([{"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":""}])
        );
        assert_eq!(
            second["runtimeConfig"]["dns"],
            json!({"servers":["10.0.0.10"],"searches":[],"options":["ndots:5"]})
        );
        assert!(second["runtimeConfig"].get("bandwidth").is_none());
        let third = runner.plugin_config(&a, &conf.plugins[2], Some(&prev));
        assert_eq!(
            third["runtimeConfig"],
            json!({"bandwidth":{"ingressRate":1_000_000,"ingressBurst":u32::MAX}})
        );
    }

    #[test]
    fn result_addresses_ipv4_first() {
        let r = json!({"ips":[{"address":"fd00::5/64"},{"address":"10.1.0.5/24"}]});
        assert_eq!(result_ips(&r), ["10.1.0.5", "fd00::5"]);
        let old = json!({"ip4":{"ip":"10.1.0.6/24"}});
        assert_eq!(result_ips(&old), ["10.1.0.6"]);
    }

    use crate::network::fake_cni::FakePlugins;

    fn list(conf: Value) -> ConfList {
        parse(PathBuf::from("/x.conflist"), conf).unwrap()
    }

    fn attachment(pod_id: &str, conf: &ConfList) -> CniAttachment {
        CniAttachment {
            pod_id: pod_id.into(),
            netns: format!("/run/netns/{pod_id}"),
            args: String::new(),
            conf: conf.clone(),
            host_ports: vec![],
            dns: None,
            bandwidth: None,
            result: Some(json!({"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]})),
        }
    }

    /// The verbs of each logged call, in order.
    fn verbs(log: &[String]) -> Vec<String> {
        log.iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[tokio::test]
    async fn check_gc_and_status_run_only_from_the_version_that_has_them() {
        let fake = FakePlugins::new(&["a"]);
        let runner = fake.runner();
        let cases = [
            (json!({"cniVersion":"0.3.1"}), vec![]),
            (json!({"cniVersion":"0.4.0"}), vec!["a CHECK"]),
            (json!({"cniVersion":"1.0.0"}), vec!["a CHECK"]),
            (
                json!({"cniVersion":"1.1.0"}),
                vec!["a CHECK", "a GC", "a STATUS"],
            ),
            (
                json!({"cniVersion":"1.1.0","disableCheck":true,"disableGC":true}),
                vec!["a STATUS"],
            ),
            // The highest of `cniVersions` pvecri speaks wins over
            // `cniVersion`; one it does not speak is passed over.
            (
                json!({"cniVersion":"0.3.1","cniVersions":["0.3.1","1.1.0","9.0.0"]}),
                vec!["a CHECK", "a GC", "a STATUS"],
            ),
            (
                json!({"cniVersion":"1.1.0","cniVersions":["0.4.0","9.0.0"]}),
                vec!["a CHECK"],
            ),
            // Not a version: no optional verb.
            (json!({"cniVersion":"1.1.0-rc1"}), vec![]),
        ];
        for (head, expected) in cases {
            let mut conf = head.clone();
            conf["name"] = json!("net");
            conf["plugins"] = json!([{"type":"a"}]);
            let conf = list(conf);
            runner.check(&attachment("p1", &conf)).await.unwrap();
            runner.gc(&conf, &["p1".to_owned()]).await.unwrap();
            runner.status(&conf).await.unwrap();
            assert_eq!(verbs(&fake.take_log()), expected, "{head}");
        }
        // CHECK needs a completed ADD.
        let conf = list(json!({"cniVersion":"1.1.0","name":"net","plugins":[{"type":"a"}]}));
        let mut unfinished = attachment("p1", &conf);
        unfinished.result = None;
        runner.check(&unfinished).await.unwrap();
        assert!(fake.take_log().is_empty());
        let bad = parse(
            PathBuf::from("/x.conflist"),
            json!({"cniVersion":"1.1.0","name":"n","disableGC":"yes","plugins":[{"type":"a"}]}),
        );
        assert!(matches!(bad, Err(ConfError::NotABool("disableGC"))));
    }

    #[tokio::test]
    async fn gc_tells_every_plugin_the_valid_attachments_and_names_no_pod() {
        let fake = FakePlugins::new(&["a", "b"]);
        let runner = fake.runner();
        let conf = list(json!({"cniVersion":"1.1.0","name":"net","plugins":[
            {"type":"a","bridge":"cni0"},{"type":"b"}]}));
        runner
            .gc(&conf, &["p1".to_owned(), "p2".to_owned()])
            .await
            .unwrap();
        assert_eq!(
            fake.take_log(),
            ["a GC id= netns= ifname=", "b GC id= netns= ifname="]
        );
        let stdin = fake.stdin("a", "GC");
        assert_eq!(stdin["name"], "net");
        assert_eq!(stdin["cniVersion"], "1.1.0");
        assert_eq!(stdin["bridge"], "cni0");
        assert_eq!(
            stdin["cni.dev/valid-attachments"],
            json!([{"containerID":"p1","ifname":"eth0"},{"containerID":"p2","ifname":"eth0"}])
        );
        assert!(stdin.get("prevResult").is_none());
        // No pod left: an empty list, which tells the plugins to release all.
        runner.gc(&conf, &[]).await.unwrap();
        assert_eq!(
            fake.stdin("b", "GC")["cni.dev/valid-attachments"],
            json!([])
        );
        fake.take_log();
        // Every plugin runs even when one fails; all failures are reported.
        fake.fail("GC", true);
        let err = runner.gc(&conf, &[]).await.unwrap_err();
        assert!(
            matches!(&err, CniError::Gc { errors, .. } if errors.len() == 2),
            "{err}"
        );
        assert_eq!(verbs(&fake.take_log()), ["a GC", "b GC"]);
    }

    #[tokio::test]
    async fn check_carries_the_add_result_and_stops_at_the_first_failure() {
        let fake = FakePlugins::new(&["a", "b"]);
        let runner = fake.runner();
        let conf =
            list(json!({"cniVersion":"1.0.0","name":"net","plugins":[{"type":"a"},{"type":"b"}]}));
        let a = attachment("p1", &conf);
        runner.check(&a).await.unwrap();
        assert_eq!(
            fake.take_log(),
            [
                "a CHECK id=p1 netns=/run/netns/p1 ifname=eth0",
                "b CHECK id=p1 netns=/run/netns/p1 ifname=eth0"
            ]
        );
        assert_eq!(
            fake.stdin("b", "CHECK")["prevResult"],
            a.result.clone().unwrap()
        );
        fake.fail("CHECK", true);
        let err = runner.check(&a).await.unwrap_err();
        assert!(
            matches!(&err, CniError::Failed { plugin, command: "CHECK", code: Some(50), message }
                if plugin == "a" && message == "plugin not available: told to fail"),
            "{err}"
        );
        assert_eq!(verbs(&fake.take_log()), ["a CHECK"]);
    }

    #[tokio::test]
    async fn status_reports_the_first_plugin_that_is_not_ready() {
        let fake = FakePlugins::new(&["a", "b"]);
        let runner = fake.runner();
        let conf =
            list(json!({"cniVersion":"1.1.0","name":"net","plugins":[{"type":"a"},{"type":"b"}]}));
        runner.status(&conf).await.unwrap();
        assert_eq!(
            fake.take_log(),
            ["a STATUS id= netns= ifname=", "b STATUS id= netns= ifname="]
        );
        fake.fail("STATUS", true);
        let err = runner.status(&conf).await.unwrap_err().to_string();
        assert_eq!(
            err,
            "CNI plugin a STATUS failed (code 50): plugin not available: told to fail"
        );
    }

    #[test]
    fn a_stderr_message_is_its_first_line() {
        use std::os::unix::process::ExitStatusExt;
        let failed = std::process::ExitStatus::from_raw(2 << 8);
        let panic = b"panic: nil pointer\n\ngoroutine 1 [running]:\nmain.cmdCheck()\n";
        assert_eq!(
            stderr_message(panic, failed),
            "panic: nil pointer (2 more lines on stderr)"
        );
        assert_eq!(stderr_message(b" one line \n", failed), "one line");
        assert_eq!(stderr_message(b"", failed), "exit status: 2");
    }

    #[tokio::test]
    async fn a_plugin_output_beyond_the_bound_is_refused() {
        let fake = FakePlugins::new(&[]);
        let conf = list(json!({"cniVersion":"1.1.0","name":"net","plugins":[{"type":"loud"}]}));
        let err = fake.runner().status(&conf).await.unwrap_err();
        assert!(
            matches!(&err, CniError::OutputTooLarge { plugin, command: "STATUS" } if plugin == "loud"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_plugin_that_never_reads_a_large_stdin_times_out() {
        let fake = FakePlugins::new(&[]);
        let limit = Duration::from_secs(1);
        let runner = fake.runner().with_timeout(limit);
        let conf = list(json!({"cniVersion":"1.1.0","name":"net","plugins":[{"type":"stuck"}]}));
        // GC's stdin names every pod: far more than a pipe holds.
        let valid: Vec<String> = (0..4000).map(|i| format!("{i:064x}")).collect();
        let started = std::time::Instant::now();
        let gc = tokio::time::timeout(Duration::from_secs(30), runner.gc(&conf, &valid))
            .await
            .expect("GC returned although the plugin never read its stdin");
        let err = gc.unwrap_err();
        assert!(
            matches!(&err, CniError::Gc { errors, .. }
                if matches!(errors.as_slice(), [CniError::Timeout { plugin, command: "GC", after }]
                    if plugin == "stuck" && *after == limit)),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_plugin_logging_megabytes_to_stderr_still_succeeds() {
        let fake = FakePlugins::new(&[]);
        let runner = fake.runner();
        let conf = list(json!({"cniVersion":"1.1.0","name":"net","plugins":[{"type":"chatty"}]}));
        let mut a = attachment("p1", &conf);
        a.result = None;
        let result = runner.add(&a).await.unwrap();
        assert_eq!(result_ips(&result), ["10.9.0.3"]);
        // A failure's message comes from the kept start of stderr.
        let err = runner.del(&a).await.unwrap_err();
        let CniError::Failed { message, .. } = &err else {
            panic!("{err}");
        };
        let kept_lines = STDERR_KEPT / "debug: a line of chatter\n".len();
        assert!(
            message.starts_with("debug: a line of chatter (")
                && message.contains(&format!("{kept_lines} more lines")),
            "{message}"
        );
    }
}
