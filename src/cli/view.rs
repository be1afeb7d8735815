//! Where the diagnostic verbs (`ps`, `pods`, `images`, `inspect`, `logs`)
//! get their data: the daemon over its socket when it answers, else the
//! store, read-only (a running daemon holds the store exclusively, so the
//! two never overlap). Both give the same rows.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::client::CriClient;
use crate::config::Config;
use crate::container::record::{ContainerRecord, ContainerState};
use crate::cri::v1;
use crate::image::ImageRecord;
use crate::pod::record::{PodRecord, PodState};
use crate::store::ReadOnlyStore;

/// `-o table` (aligned columns) or `-o json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct PodRow {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub state: String,
    pub ips: Vec<String>,
    pub created_ns: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct ContainerRow {
    pub id: String,
    pub name: String,
    pub pod_id: String,
    pub state: String,
    pub image: String,
    pub created_ns: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct ImageRow {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub size: u64,
}

/// The records of a stopped daemon's store.
pub(super) struct Snapshot {
    pub pods: Vec<PodRecord>,
    pub containers: Vec<ContainerRecord>,
    pub images: Vec<ImageRecord>,
}

pub(super) enum Source {
    Daemon(Box<CriClient>),
    Store(Snapshot),
}

impl Source {
    /// The daemon if it answers on the configured socket, else the store
    /// (saying so on stderr).
    pub(super) async fn open(config: &Config) -> anyhow::Result<Source> {
        if let Ok(mut client) = CriClient::connect(&config.socket).await {
            if client
                .runtime
                .version(v1::VersionRequest::default())
                .await
                .is_ok()
            {
                return Ok(Source::Daemon(Box::new(client)));
            }
        }
        let path = config.store_path();
        eprintln!(
            "pvecri: the daemon does not answer on {}; showing the store {} (read-only; states as last recorded)",
            config.socket.display(),
            path.display()
        );
        Ok(Source::Store(read_store(&path)?))
    }

    pub(super) fn is_daemon(&self) -> bool {
        matches!(self, Source::Daemon(_))
    }

    pub(super) async fn pods(&mut self) -> anyhow::Result<Vec<PodRow>> {
        match self {
            Source::Store(s) => Ok(s.pods.iter().map(pod_row).collect()),
            Source::Daemon(c) => {
                let pods = c
                    .runtime
                    .list_pod_sandbox(v1::ListPodSandboxRequest::default())
                    .await?
                    .into_inner()
                    .items;
                let mut rows = Vec::with_capacity(pods.len());
                for p in pods {
                    // IPs are only in the status.
                    let ips = c
                        .runtime
                        .pod_sandbox_status(v1::PodSandboxStatusRequest {
                            pod_sandbox_id: p.id.clone(),
                            verbose: false,
                        })
                        .await
                        .ok()
                        .and_then(|r| r.into_inner().status?.network)
                        .map(|n| {
                            std::iter::once(n.ip)
                                .chain(n.additional_ips.into_iter().map(|i| i.ip))
                                .filter(|ip| !ip.is_empty())
                                .collect()
                        })
                        .unwrap_or_default();
                    let meta = p.metadata.unwrap_or_default();
                    rows.push(PodRow {
                        id: p.id,
                        name: meta.name,
                        namespace: meta.namespace,
                        state: pod_state_name(p.state == v1::PodSandboxState::SandboxReady as i32),
                        ips,
                        created_ns: p.created_at,
                    });
                }
                Ok(rows)
            }
        }
    }

    pub(super) async fn containers(&mut self) -> anyhow::Result<Vec<ContainerRow>> {
        match self {
            Source::Store(s) => Ok(s.containers.iter().map(container_row).collect()),
            Source::Daemon(c) => Ok(c
                .runtime
                .list_containers(v1::ListContainersRequest::default())
                .await?
                .into_inner()
                .containers
                .into_iter()
                .map(|c| ContainerRow {
                    name: c.metadata.map(|m| m.name).unwrap_or_default(),
                    pod_id: c.pod_sandbox_id,
                    state: container_state_name(c.state),
                    image: c
                        .image
                        .map(|i| i.user_specified_image)
                        .filter(|i| !i.is_empty())
                        .unwrap_or(c.image_ref),
                    created_ns: c.created_at,
                    id: c.id,
                })
                .collect()),
        }
    }

    pub(super) async fn images(&mut self) -> anyhow::Result<Vec<ImageRow>> {
        match self {
            Source::Store(s) => Ok(s
                .images
                .iter()
                .map(|i| ImageRow {
                    id: i.id.clone(),
                    repo_tags: i.repo_tags.clone(),
                    size: i.size,
                })
                .collect()),
            Source::Daemon(c) => Ok(c
                .image
                .list_images(v1::ListImagesRequest::default())
                .await?
                .into_inner()
                .images
                .into_iter()
                .map(|i| ImageRow {
                    id: i.id,
                    repo_tags: i.repo_tags,
                    size: i.size,
                })
                .collect()),
        }
    }
}

fn read_store(path: &Path) -> anyhow::Result<Snapshot> {
    let store = ReadOnlyStore::open(path)
        .with_context(|| format!("cannot read the store {}", path.display()))?;
    Ok(Snapshot {
        pods: store.list()?,
        containers: store.list()?,
        images: store.list()?,
    })
}

fn pod_state_name(ready: bool) -> String {
    if ready { "Ready" } else { "NotReady" }.to_owned()
}

fn container_state_name(state: i32) -> String {
    match v1::ContainerState::try_from(state) {
        Ok(v1::ContainerState::ContainerCreated) => "Created",
        Ok(v1::ContainerState::ContainerRunning) => "Running",
        Ok(v1::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
    .to_owned()
}

pub(super) fn pod_row(p: &PodRecord) -> PodRow {
    PodRow {
        id: p.id.clone(),
        name: p.config.name.clone(),
        namespace: p.config.namespace.clone(),
        state: pod_state_name(p.state == PodState::Ready),
        ips: p.ips.clone(),
        created_ns: p.created_at_ns,
    }
}

pub(super) fn container_row(c: &ContainerRecord) -> ContainerRow {
    let state = match c.state {
        ContainerState::Created => "Created",
        ContainerState::Running => "Running",
        ContainerState::Exited => "Exited",
        ContainerState::Unknown => "Unknown",
    };
    ContainerRow {
        id: c.id.clone(),
        name: c.config.name.clone(),
        pod_id: c.pod_id.clone(),
        state: state.to_owned(),
        image: if c.image_name.is_empty() {
            c.image_ref.clone()
        } else {
            c.image_name.clone()
        },
        created_ns: c.created_at_ns,
    }
}

/// The one ID among `ids` that starts with `prefix` (an exact match wins).
pub(super) fn resolve<'a>(
    what: &str,
    prefix: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<String> {
    if prefix.is_empty() {
        anyhow::bail!("an empty {what} ID matches everything; give an ID or a prefix of one");
    }
    let matches: Vec<&str> = ids
        .into_iter()
        .filter(|id| id.starts_with(prefix))
        .collect();
    if let Some(exact) = matches.iter().find(|id| **id == prefix) {
        return Ok((*exact).to_owned());
    }
    match matches.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => anyhow::bail!("no {what} with ID {prefix:?}"),
        many => anyhow::bail!(
            "ID prefix {prefix:?} is ambiguous: {}",
            many.iter()
                .map(|id| short(id))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The first 13 characters of an ID, as tables show it.
pub(super) fn short(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

/// How long ago `created_ns` was, in one unit (`42s`, `5m`, `3h`, `2d`).
pub(super) fn age(created_ns: i64, now_ns: i64) -> String {
    let secs = (now_ns.saturating_sub(created_ns) / 1_000_000_000).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Prints rows under headers with each column as wide as its widest cell.
pub(super) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(headers, rows));
}

pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A single-threaded runtime for one verb's calls.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Prints a value as pretty JSON.
pub(super) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_to_one_id_or_say_why_not() {
        let ids = ["abc111", "abc222", "def333"];
        assert_eq!(resolve("container", "def", ids).unwrap(), "def333");
        assert_eq!(resolve("container", "abc111", ids).unwrap(), "abc111");
        let err = resolve("container", "abc", ids).unwrap_err().to_string();
        assert!(
            err.contains("ambiguous") && err.contains("abc111") && err.contains("abc222"),
            "{err}"
        );
        let err = resolve("pod", "zzz", ids).unwrap_err().to_string();
        assert!(err.contains("no pod with ID \"zzz\""), "{err}");
        assert!(resolve("pod", "", ids).is_err());
        // An exact ID that is also a prefix of another still resolves.
        assert_eq!(resolve("c", "ab", ["ab", "abc"]).unwrap(), "ab");
    }

    #[test]
    fn tables_align_and_ages_read_short() {
        let t = table(
            &["ID", "NAME", "STATE"],
            &[
                vec!["a".into(), "long-name".into(), "Running".into()],
                vec!["bbbb".into(), "n".into(), "Exited".into()],
            ],
        );
        assert_eq!(
            t,
            "ID    NAME       STATE\na     long-name  Running\nbbbb  n          Exited\n"
        );
        let s = 1_000_000_000i64;
        assert_eq!(age(0, 5 * s), "5s");
        assert_eq!(age(0, 600 * s), "10m");
        assert_eq!(age(0, 3 * 3600 * s), "3h");
        assert_eq!(age(0, 3 * 86400 * s), "3d");
        assert_eq!(age(10 * s, 0), "0s");
        assert_eq!(short("0123456789abcdef"), "0123456789abc");
    }
}
