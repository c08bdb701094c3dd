//! Start-up and shutdown of the whole service.

use std::sync::Arc;

use crate::data::DataDir;
use crate::{Config, Listening, ServeError, Shared, Shutdown};

/// What a started server reports: where it listens.
#[derive(Debug, Clone)]
pub struct Started {
    pub listening: Vec<Listening>,
    pub data: DataDir,
    pub accounts: usize,
}

/// Prepare the data directory, bind every listener, call `on_started` once
/// all are bound, then serve until `shutdown` fires.
pub async fn run(
    config: Config,
    shutdown: Shutdown,
    on_started: impl FnOnce(&Started),
) -> Result<(), ServeError> {
    crate::pii::set_log_pii(config.log_pii);
    crate::turn::raise_fd_limit(config.turn_total_quota);
    let data = DataDir::new(&config.data);
    data.create()?;
    let store = natter_store::Store::open(&data.db())?;
    // New accounts are keyed for the domain this server runs under.
    store.set_realm(&config.domain)?;
    let stale = store.accounts_outside_realm(&config.domain)?;
    if stale > 0 {
        tracing::warn!(
            "{stale} account(s) were created for another domain than {}; they cannot sign in until `natter user passwd ID` sets a new password",
            config.domain
        );
    }
    let turn_secret: Arc<str> = data.load_or_create_secret(&config)?.into();
    let tls = crate::tls::load_or_create(&data, &config.domain)?;
    let shared = Shared {
        config: Arc::new(config),
        store: store.clone(),
        tls,
        turn_secret,
        shutdown: shutdown.clone(),
        sip: Default::default(),
    };

    let mut listening = crate::turn::start(&shared).await?;
    listening.extend(crate::sip::start(&shared).await?);
    let https = crate::http::start(&shared, &listening).await?;
    listening.extend(https);

    let started = Started {
        listening,
        data,
        accounts: store.count_accounts()?,
    };
    on_started(&started);
    let mut shutdown = shutdown;
    shutdown.wait().await;
    tracing::info!("stopping");
    Ok(())
}
