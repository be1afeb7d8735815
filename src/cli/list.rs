//! `pvecri ps`, `pvecri pods`, `pvecri images`: what the node runs, from
//! the daemon or, when it is down, from its store (see [`super::view`]).

use std::process::ExitCode;

use crate::config::Config;

use super::view::{age, print_json, print_table, runtime, short, Output, Source};

#[derive(clap::Args)]
pub(super) struct PsArgs {
    /// Include created and exited containers.
    #[arg(short, long)]
    all: bool,
    /// Only containers of the pod whose ID starts with this.
    #[arg(long, default_value = "")]
    pod: String,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(clap::Args)]
pub(super) struct ListArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

pub(super) fn ps(config: &Config, args: PsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut source = Source::open(config).await?;
        let mut rows: Vec<_> = source
            .containers()
            .await?
            .into_iter()
            .filter(|c| args.all || c.state == "Running")
            .filter(|c| c.pod_id.starts_with(&args.pod))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.created_ns));
        if args.output == Output::Json {
            return print_json(&rows).map(|()| ExitCode::SUCCESS);
        }
        let now = crate::runtime::now_ns();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|c| {
                vec![
                    short(&c.id).to_owned(),
                    c.name.clone(),
                    c.state.clone(),
                    age(c.created_ns, now),
                    short(&c.pod_id).to_owned(),
                    c.image.clone(),
                ]
            })
            .collect();
        print_table(
            &["CONTAINER", "NAME", "STATE", "CREATED", "POD", "IMAGE"],
            &cells,
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn pods(config: &Config, args: ListArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut source = Source::open(config).await?;
        let mut rows = source.pods().await?;
        rows.sort_by_key(|r| std::cmp::Reverse(r.created_ns));
        if args.output == Output::Json {
            return print_json(&rows).map(|()| ExitCode::SUCCESS);
        }
        let now = crate::runtime::now_ns();
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|p| {
                vec![
                    short(&p.id).to_owned(),
                    p.name.clone(),
                    p.namespace.clone(),
                    p.state.clone(),
                    p.ips.join(","),
                    age(p.created_ns, now),
                ]
            })
            .collect();
        print_table(
            &["POD", "NAME", "NAMESPACE", "STATE", "IP", "CREATED"],
            &cells,
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn images(config: &Config, args: ListArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut source = Source::open(config).await?;
        let mut rows = source.images().await?;
        rows.sort_by(|a, b| a.repo_tags.cmp(&b.repo_tags));
        if args.output == Output::Json {
            return print_json(&rows).map(|()| ExitCode::SUCCESS);
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|i| {
                let hex = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
                vec![
                    short(hex).to_owned(),
                    if i.repo_tags.is_empty() {
                        "<none>".to_owned()
                    } else {
                        i.repo_tags.join(",")
                    },
                    format!("{:.1} MiB", i.size as f64 / 1048576.0),
                ]
            })
            .collect();
        print_table(&["IMAGE ID", "TAGS", "SIZE"], &cells);
        Ok(ExitCode::SUCCESS)
    })
}
