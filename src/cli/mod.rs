//! Command-line interface.

mod audio;
mod phone;
mod probe;
mod serve;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// natter: a self-hostable calling service (directory, SIP signaling, STUN, TURN).
#[derive(Debug, Parser)]
#[command(name = "natter", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: SIP registrar and proxy, STUN/TURN, HTTPS.
    Serve(serve::ServeArgs),
    /// Manage accounts (phone numbers or usernames).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Show the public address a STUN server sees and how your NAT behaves.
    Probe(probe::ProbeArgs),
    /// A phone: register, call a number or answer, with encrypted voice.
    Phone(phone::PhoneArgs),
    /// List the sound card devices `natter phone --audio-in/--audio-out` take.
    AudioDevices,
}

/// Where the data lives, shared by every command that touches it.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Data directory (database, TLS certificate, TURN secret).
    #[arg(long, value_name = "DIR", default_value = "natter-data")]
    pub data: PathBuf,
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::User(cmd) => user::run(cmd),
        Command::Phone(args) => phone::run(args),
        Command::Probe(args) => probe::run(args),
        Command::AudioDevices => audio::list(),
    }
}
