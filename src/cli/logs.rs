//! `pvecri logs <container>`: the container's CRI log file, with the
//! timestamp/stream/tag prefix of each line removed (or kept with
//! `--raw`), optionally following it.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::cri::v1;

use super::view::{resolve, runtime, Source};

#[derive(clap::Args)]
pub(super) struct LogsArgs {
    /// A container ID or a unique prefix of one.
    id: String,
    /// Keep following the log while the container runs.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Print the lines as stored (`<time> <stream> <F|P> <text>`).
    #[arg(long)]
    raw: bool,
}

pub(super) fn run(config: &Config, args: LogsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut source = Source::open(config).await?;
        let containers = source.containers().await?;
        let id = resolve(
            "container",
            &args.id,
            containers.iter().map(|c| c.id.as_str()),
        )?;
        let path = log_path(&mut source, &id).await?;
        if path.is_empty() {
            anyhow::bail!("container {id} has no log file");
        }
        let mut file = std::fs::File::open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the log {path}: {e}"))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let lines: Vec<&str> = text.lines().collect();
        let start = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
        let mut out = std::io::stdout().lock();
        for line in &lines[start..] {
            out.write_all(render(line, args.raw).as_bytes())?;
        }
        out.flush()?;
        drop(out);
        if args.follow {
            follow(&mut source, &id, file, args.raw).await?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn log_path(source: &mut Source, id: &str) -> anyhow::Result<String> {
    Ok(match source {
        Source::Daemon(client) => client
            .runtime
            .container_status(v1::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .map(|s| s.log_path)
            .unwrap_or_default(),
        Source::Store(s) => s
            .containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.log_file.clone())
            .unwrap_or_default(),
    })
}

/// Prints what is appended to the log until the container has exited and
/// the file has stopped growing for a second (or forever when the daemon
/// is down and the state cannot be asked).
async fn follow(
    source: &mut Source,
    id: &str,
    mut file: std::fs::File,
    raw: bool,
) -> anyhow::Result<()> {
    let mut pending = String::new();
    let mut last_growth = Instant::now();
    loop {
        let mut chunk = String::new();
        file.read_to_string(&mut chunk)?;
        if chunk.is_empty() {
            if last_growth.elapsed() > Duration::from_secs(1) && exited(source, id).await {
                return Ok(());
            }
            // A rotated (truncated) log starts again from its beginning.
            let pos = file.stream_position()?;
            if file.metadata()?.len() < pos {
                file.seek(SeekFrom::Start(0))?;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        last_growth = Instant::now();
        pending.push_str(&chunk);
        let mut out = std::io::stdout().lock();
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            out.write_all(render(line.trim_end_matches('\n'), raw).as_bytes())?;
        }
        out.flush()?;
    }
}

async fn exited(source: &mut Source, id: &str) -> bool {
    let Source::Daemon(client) = source else {
        return false;
    };
    match client
        .runtime
        .container_status(v1::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
    {
        Ok(r) => r
            .into_inner()
            .status
            .is_none_or(|s| s.state == v1::ContainerState::ContainerExited as i32),
        Err(_) => true,
    }
}

/// One stored line as printed: the text with a newline, or without one
/// for a partial (`P`) line; the whole line with `raw`.
fn render(line: &str, raw: bool) -> String {
    if raw {
        return format!("{line}\n");
    }
    let mut parts = line.splitn(4, ' ');
    let (_time, stream, tag, text) = (parts.next(), parts.next(), parts.next(), parts.next());
    if !matches!(stream, Some("stdout" | "stderr")) {
        return format!("{line}\n");
    }
    match (tag, text) {
        (Some("P"), Some(text)) => text.to_owned(),
        (Some("F"), Some(text)) => format!("{text}\n"),
        // "<time> <stream> F" with an empty text.
        (Some("F" | "P"), None) => "\n".to_owned(),
        _ => format!("{line}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_lose_their_prefix() {
        let t = "2026-12-06T05:00:00.000000000Z";
        assert_eq!(
            render(&format!("{t} stdout F hello world"), false),
            "hello world\n"
        );
        assert_eq!(render(&format!("{t} stderr P part"), false), "part");
        assert_eq!(render(&format!("{t} stdout F"), false), "\n");
        assert_eq!(render("not a cri line", false), "not a cri line\n");
        assert_eq!(
            render(&format!("{t} stdout F x"), true),
            format!("{t} stdout F x\n")
        );
    }
}
