//! `pvecri version`.

use std::process::ExitCode;
use std::time::Duration;

use crate::client::CriClient;
use crate::config::Config;
use crate::cri::v1::VersionRequest;
use crate::version;

pub(super) fn run(config: &Config) -> anyhow::Result<ExitCode> {
    println!("pvecri:  {}", version::runtime_version());
    println!("liblxc:  {}", crate::lxc::version());
    println!("CRI API: {}", version::CRI_API_VERSION);
    match daemon_version(config) {
        Ok(v) => println!(
            "daemon:  {} {} (CRI {}) on {}",
            v.runtime_name,
            v.runtime_version,
            v.runtime_api_version,
            config.socket.display()
        ),
        Err(err) => println!(
            "daemon:  not reachable on {}: {err:#}",
            config.socket.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn daemon_version(config: &Config) -> anyhow::Result<crate::cri::v1::VersionResponse> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let call = async {
            let mut client = CriClient::connect(&config.socket).await?;
            let resp = client.runtime.version(VersionRequest::default()).await?;
            anyhow::Ok(resp.into_inner())
        };
        tokio::time::timeout(Duration::from_secs(5), call).await?
    })
}
