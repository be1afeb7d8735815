//! `pvecri census`: what pvecri owns on the node, one line per kind
//! (`--json` for scripts). With `--stopped` the daemon is expected to be
//! stopped with every pod removed: any live state left is a failure
//! (exit 1). See docs/census.md.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::CriClient;
use crate::config::Config;
use crate::cri::v1;
use crate::node::census::{self, Options, RealHost, StoreKeys, StoreView};

#[derive(clap::Args)]
pub(super) struct CensusArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The daemon should be stopped and every pod removed: exit 1 when
    /// anything live is left (processes, cgroups, mounts, pins, links,
    /// nftables state, per-container dirs) or cannot be read.
    #[arg(long)]
    stopped: bool,
    /// Count everything on the node shaped like pvecri's, not only what
    /// this state dir names.
    #[arg(long)]
    node: bool,
    /// Also look for this pod or container ID (repeatable): one the state
    /// no longer names because it was removed.
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    /// The state dir to census instead of the config's.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The run dir to census instead of the config's.
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
}

pub(super) fn run(mut config: Config, args: CensusArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    if let Some(dir) = args.runtime_dir {
        config.runtime_dir = dir;
    }
    if let Some(bad) = args.ids.iter().find(|id| !census::is_id(id)) {
        anyhow::bail!("--id {bad:?} is not a pod or container ID (64 lowercase hex digits)");
    }
    let mut store = census::store::read(&config.store_path());
    if store == StoreView::InUse {
        store = match ask_daemon(&config) {
            Ok(keys) => StoreView::FromDaemon(keys),
            Err(e) => StoreView::Unreadable(format!(
                "the store is in use and the daemon does not answer on {}: {e:#}",
                config.socket.display()
            )),
        };
    }
    let options = Options {
        node: args.node,
        ids: args.ids.into_iter().collect(),
    };
    let report = census::take(&config, &options, &RealHost, &store);
    let out = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.text()
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    let leftovers = report.leftovers();
    if args.stopped && !leftovers.is_empty() {
        let kinds: Vec<&str> = leftovers.iter().map(|s| s.kind.name()).collect();
        eprintln!(
            "pvecri census: left behind with the daemon stopped: {}",
            kinds.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Pods, containers and images as the running daemon lists them.
fn ask_daemon(config: &Config) -> anyhow::Result<StoreKeys> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut c = CriClient::connect(&config.socket).await?;
            let pods = c
                .runtime
                .list_pod_sandbox(v1::ListPodSandboxRequest::default())
                .await?
                .into_inner()
                .items;
            let containers = c
                .runtime
                .list_containers(v1::ListContainersRequest::default())
                .await?
                .into_inner()
                .containers;
            let images = c
                .image
                .list_images(v1::ListImagesRequest::default())
                .await?
                .into_inner()
                .images;
            anyhow::Ok(StoreKeys {
                pods: pods.into_iter().map(|p| p.id).collect(),
                containers: containers.into_iter().map(|c| c.id).collect(),
                images: images.into_iter().map(|i| i.id).collect(),
                networks: None,
            })
        })
        .await?
    })
}
