//! `natter`: one binary for the server (`serve`), its accounts (`user`) and
//! network diagnostics (`probe`).

#![forbid(unsafe_code)]

mod cli;
mod probe;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("natter: {e:#}");
            ExitCode::FAILURE
        }
    }
}
