//! `natter probe`.

use std::process::ExitCode;
use std::time::Duration;

use crate::probe::{self as engine, ProbeOptions};

/// Flags of `natter probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The STUN server: IP or DNS name, port 3478 unless given.
    #[arg(value_name = "HOST[:PORT]", default_value = "127.0.0.1:3478")]
    server: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// How long each STUN test waits for an answer, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 3000)]
    timeout_ms: u64,
}

pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let report = engine::run(ProbeOptions {
        server: args.server,
        timeout: Duration::from_millis(args.timeout_ms),
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(ExitCode::SUCCESS)
}
