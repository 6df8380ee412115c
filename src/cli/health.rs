//! `agent-runner health`: asks a running worker's (or mirror's) own HTTP surface whether
//! it is ready (`/readyz`) or alive (`--live`, `/livez`); exit 0 when it says so, 1
//! otherwise. A container healthcheck needs no curl in the image.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::RunnerConfig;

/// The whole check, connect to answer. A healthcheck that hangs is worse than one that
/// fails: the orchestrator's own timeout would kill it without a reason.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Ask `/livez` (the process is up) instead of `/readyz` (it can take tasks).
    #[arg(long)]
    pub live: bool,
}

pub async fn run(config: RunnerConfig, args: HealthArgs) -> anyhow::Result<ExitCode> {
    let listen = config.http.listen.ok_or_else(|| {
        super::exit::MissingSetting(
            "no HTTP address to ask: set http.listen in the configuration or pass --http-addr".into(),
        )
    })?;
    let path = if args.live { "/livez" } else { "/readyz" };
    let url = format!("http://{}{path}", reachable(listen));
    let client = crate::tls::http_client_builder().timeout(HEALTH_CHECK_TIMEOUT).build()?;
    match client.get(&url).send().await {
        Ok(response) => {
            let healthy = response.status().is_success();
            let body = response.text().await.unwrap_or_default();
            println!("{url}: {}", body.trim());
            Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(error) => {
            println!("{url}: no answer: {}", root_cause(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The innermost cause: reqwest's own message only repeats the URL printed already.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// The address to connect to for a listen address: a wildcard listener is reached on
/// the loopback of the same family.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port()),
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_asked_on_the_loopback() {
        let cases =
            [("0.0.0.0:9090", "127.0.0.1:9090"), ("[::]:9090", "[::1]:9090"), ("10.1.2.3:80", "10.1.2.3:80")];
        for (listen, expected) in cases {
            assert_eq!(
                reachable(listen.parse().unwrap()),
                expected.parse::<SocketAddr>().unwrap(),
                "{listen}"
            );
        }
    }
}
