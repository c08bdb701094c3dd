//! `natter serve`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use natter_server::config::RawConfig;
use natter_server::{Shutdown, Started};

/// Flags of `natter serve`. Each flag has the same key in `--config FILE`
/// (TOML, e.g. `turn = "0.0.0.0:3478"`, `allow-peer = ["10.0.0.0/8"]`);
/// flags win over the file. ADDR is IP:PORT, or `off` to disable that listener.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file with the same keys as the flags.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [default: natter-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// SIP domain and TURN realm [default: localhost].
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// SIP over UDP and TCP [default: 0.0.0.0:5060].
    #[arg(long, value_name = "ADDR")]
    sip: Option<String>,
    /// SIP over TLS [default: 0.0.0.0:5061].
    #[arg(long, value_name = "ADDR")]
    sips: Option<String>,
    /// STUN/TURN over UDP and TCP [default: 0.0.0.0:3478].
    #[arg(long, value_name = "ADDR")]
    turn: Option<String>,
    /// STUN/TURN over TLS [default: 0.0.0.0:5349].
    #[arg(long, value_name = "ADDR")]
    turns: Option<String>,
    /// HTTPS: web page, WebSocket SIP, APIs [default: 0.0.0.0:8443].
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Second IP:PORT for RFC 5780 NAT discovery (another IP and port than --turn) [default: off].
    #[arg(long, value_name = "ADDR")]
    stun_alt: Option<String>,
    /// Public IP when the server sits behind a 1:1 NAT.
    #[arg(long, value_name = "IP")]
    public_ip: Option<String>,
    /// Local IP for relay sockets.
    #[arg(long, value_name = "IP")]
    relay_ip: Option<String>,
    /// Relay port range [default: 49152-65535].
    #[arg(long, value_name = "LO-HI")]
    relay_ports: Option<String>,
    /// TURN REST secret (coturn's use-auth-secret) [default: made on first start in DATA/turn-secret].
    #[arg(long, value_name = "S")]
    turn_secret: Option<String>,
    /// Let the relay reach peers in this range although it is private or special (repeatable).
    #[arg(long, value_name = "CIDR")]
    allow_peer: Vec<String>,
    /// TURN allocations one user may hold at once (more get 486) [default: 1000].
    #[arg(long, value_name = "N")]
    turn_user_quota: Option<u64>,
    /// TURN allocations in total (more get 486) [default: 20000].
    #[arg(long, value_name = "N")]
    turn_total_quota: Option<u64>,
    /// Relayed bytes per second per TURN allocation, both directions [default: 2500000].
    #[arg(long, value_name = "BYTES")]
    turn_bandwidth: Option<u64>,
    /// Unauthenticated STUN/TURN requests per second per source IP [default: 200].
    #[arg(long, value_name = "N")]
    turn_unauth_rate: Option<u64>,
    /// SIP digest algorithms to challenge with, in order: md5,sha-256 | sha-256,md5 | md5 | sha-256
    /// (md5 alone for phones that give up on a SHA-256 challenge, e.g. baresip 1.0) [default: md5,sha-256].
    #[arg(long, value_name = "ALGORITHMS")]
    sip_digest: Option<String>,
    /// Log usernames and client addresses as they are (personal data; off: a salted digest).
    #[arg(long)]
    log_pii: bool,
    /// Log level: error, warn, info, debug, trace (or a tracing filter) [default: info].
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
}

impl ServeArgs {
    fn to_raw(&self) -> RawConfig {
        RawConfig {
            data: self.data.clone(),
            domain: self.domain.clone(),
            sip: self.sip.clone(),
            sips: self.sips.clone(),
            turn: self.turn.clone(),
            turns: self.turns.clone(),
            http: self.http.clone(),
            stun_alt: self.stun_alt.clone(),
            public_ip: self.public_ip.clone(),
            relay_ip: self.relay_ip.clone(),
            relay_ports: self.relay_ports.clone(),
            turn_secret: self.turn_secret.clone(),
            allow_peer: Some(self.allow_peer.clone()),
            turn_user_quota: self.turn_user_quota,
            turn_total_quota: self.turn_total_quota,
            turn_bandwidth: self.turn_bandwidth,
            turn_unauth_rate: self.turn_unauth_rate,
            sip_digest: self.sip_digest.clone(),
            log_pii: self.log_pii.then_some(true),
            log: self.log.clone(),
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let config = file.merge(args.to_raw()).build()?;
    init_logging(&config.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("natter")
        .build()
        .context("cannot start the async runtime")?;
    let (trigger, shutdown) = Shutdown::new();
    let result = runtime.block_on(async move {
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            trigger.trigger();
        });
        let r = natter_server::run(config, shutdown, print_started).await;
        signals.abort();
        r
    });
    // Give connection tasks a moment to finish, then drop them.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}

fn print_started(s: &Started) {
    println!(
        "natter {} serving; data in {}",
        env!("CARGO_PKG_VERSION"),
        s.data.root.display()
    );
    for l in &s.listening {
        println!("  {:<10} {:<4} {}", l.service, l.transport, l.addr);
    }
    if s.accounts == 0 {
        println!(
            "No accounts yet. Add one with: natter user add +14155550100 --data {}",
            s.data.root.display()
        );
    } else {
        println!(
            "{} account(s). Add more with: natter user add ID --data {}",
            s.accounts,
            s.data.root.display()
        );
    }
    println!("Stop with Ctrl-C.");
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("--log / `log`: {level:?} is not a log level (error, warn, info, debug, trace)")
    })?;
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
