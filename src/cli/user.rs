//! `natter user …`: accounts in the data directory's database.

use std::io::BufReader;
use std::process::ExitCode;

use anyhow::Context as _;
use natter_store::{generate_password, AccountId, Store};

use super::DataArgs;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create an account; prints a strong password when none is given.
    Add {
        /// Phone number (E.164, e.g. +14155550100) or username.
        id: String,
        #[arg(long, value_name = "PW")]
        password: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Create or update accounts from a CSV file of `ID,PASSWORD` lines (`-` for stdin).
    Import {
        file: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Delete an account.
    Remove {
        id: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Set a new password; prints a strong one when none is given.
    Passwd {
        id: String,
        #[arg(long, value_name = "PW")]
        password: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

/// Where accounts live and which domain their digest keys are made for.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Domain (SIP domain and TURN realm) to key passwords for; it becomes the
    /// data directory's domain, as `serve --domain` does [default: the one
    /// recorded by the last `serve`, else localhost].
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
}

pub fn run(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Add { id, password, keys } => {
            let (store, id) = (open_keyed(&keys)?, AccountId::parse(&id)?);
            let (password, generated) = password_or_new(password)?;
            store.add_account(&id, &password)?;
            report_password("added", &id, &password, generated);
        }
        UserCommand::Passwd { id, password, keys } => {
            let (store, id) = (open_keyed(&keys)?, AccountId::parse(&id)?);
            let (password, generated) = password_or_new(password)?;
            store.set_password(&id, &password)?;
            report_password("updated", &id, &password, generated);
        }
        UserCommand::Remove { id, data } => {
            let (store, id) = (open(&data)?, AccountId::parse(&id)?);
            store.remove_account(&id)?;
            println!("removed {id}");
        }
        UserCommand::List { data } => {
            for id in open(&data)?.list_accounts()? {
                println!("{id}");
            }
        }
        UserCommand::Import { file, keys } => return import(&open_keyed(&keys)?, &file),
    }
    Ok(ExitCode::SUCCESS)
}

fn import(store: &Store, file: &str) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let report = if file == "-" {
        store.import_csv(std::io::stdin().lock())?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?;
        store.import_csv(BufReader::new(f))?
    };
    for (line, why) in &report.rejected {
        eprintln!("{file}:{line}: skipped: {why}");
    }
    println!(
        "imported {} new and {} updated account(s) in {:.2} s; {} line(s) skipped",
        report.added,
        report.updated,
        started.elapsed().as_secs_f64(),
        report.rejected.len()
    );
    Ok(if report.rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn open(data: &DataArgs) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&data.data).with_context(|| {
        format!(
            "cannot create the data directory {} (choose another with --data DIR)",
            data.data.display()
        )
    })?;
    let store = Store::open(&data.data.join("natter.db"))?;
    // Accounts made before the first `serve` are keyed for the default domain.
    store.ensure_realm("localhost")?;
    Ok(store)
}

/// Open the store for commands that make digest keys: `--domain`, when given,
/// becomes the recorded realm (warning about accounts keyed for another one).
fn open_keyed(keys: &KeyArgs) -> anyhow::Result<Store> {
    let store = open(&keys.data)?;
    if let Some(domain) = &keys.domain {
        let domain = natter_server::config::parse_domain(domain)?;
        store.set_realm(&domain)?;
        let stale = store.accounts_outside_realm(&domain)?;
        if stale > 0 {
            eprintln!(
                "warning: {stale} account(s) were created for another domain than {domain}; \
                 they cannot sign in until `natter user passwd ID --domain {domain}` sets a new password"
            );
        }
    }
    Ok(store)
}

fn password_or_new(given: Option<String>) -> anyhow::Result<(String, bool)> {
    match given {
        Some(p) if p.is_empty() => anyhow::bail!(
            "--password must not be empty; leave it out to have a strong one generated"
        ),
        Some(p) => Ok((p, false)),
        None => Ok((generate_password(), true)),
    }
}

fn report_password(what: &str, id: &AccountId, password: &str, generated: bool) {
    if generated {
        println!("{what} {id}; password: {password}");
    } else {
        println!("{what} {id}");
    }
}
