//! Write-behind persistence of bindings.
//!
//! The registrar must not wait for SQLite on every REGISTER (that would cost
//! the benchmark and latency), so binding changes are collected and written
//! in one transaction per second on a blocking thread. The core hands its
//! events over in batches (at most every 250 ms, or 1,024 at a time) so the
//! hot path does not wake another thread per registration. A crash loses at
//! most the last few seconds of registrations; those devices re-register
//! anyway.
//! Only UDP bindings are written (see `natter_store::StoredBinding`).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use natter_sip::flow::{Flow, Transport};
use natter_sip::location::Binding;
use natter_sip::{Event, Server};
use natter_store::{Store, StoredBinding};
use tokio::sync::mpsc;

use crate::Shutdown;

const BATCH_EVERY: Duration = Duration::from_secs(1);
/// Longest remaining lifetime accepted from storage (a week).
const MAX_LEFT: u64 = 7 * 86_400;

/// Start the writer; returns where the core sends its events.
pub(crate) fn spawn(store: Store, mut shutdown: Shutdown) -> mpsc::UnboundedSender<Vec<Event>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Event>>();
    tokio::spawn(async move {
        let mut pending: HashMap<String, Vec<StoredBinding>> = HashMap::new();
        let mut tick = tokio::time::interval(BATCH_EVERY);
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Some(events) => collect(&mut pending, events),
                    None => break,
                },
                _ = tick.tick() => write(&store, &mut pending).await,
                _ = shutdown.wait() => break,
            }
        }
        while let Ok(events) = rx.try_recv() {
            collect(&mut pending, events);
        }
        write(&store, &mut pending).await;
    });
    tx
}

fn collect(pending: &mut HashMap<String, Vec<StoredBinding>>, events: Vec<Event>) {
    for event in events {
        if let Event::BindingsChanged { account, bindings } = event {
            let stored = to_stored(&account, &bindings);
            pending.insert(account, stored);
        }
    }
}

async fn write(store: &Store, pending: &mut HashMap<String, Vec<StoredBinding>>) {
    if pending.is_empty() {
        return;
    }
    let batch: Vec<(String, Vec<StoredBinding>)> = pending.drain().collect();
    let store = store.clone();
    let n = batch.len();
    match tokio::task::spawn_blocking(move || store.replace_bindings(&batch)).await {
        Ok(Ok(())) => tracing::trace!(accounts = n, "bindings written"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not persist SIP bindings"),
        Err(e) => tracing::warn!(error = %e, "binding writer failed"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn to_stored(account: &str, bindings: &[Binding]) -> Vec<StoredBinding> {
    let (now, unix) = (Instant::now(), unix_now());
    bindings
        .iter()
        .filter(|b| b.flow.transport == Transport::Udp)
        .map(|b| StoredBinding {
            account: account.to_owned(),
            contact: b.contact.clone(),
            instance: b.instance.clone(),
            reg_id: b.reg_id,
            expires_unix: unix + b.expires_at.saturating_duration_since(now).as_secs() as i64,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            transport: b.flow.transport.via_token().to_owned(),
            local: b.flow.local.to_string(),
            remote: b.flow.remote.to_string(),
        })
        .collect()
}

/// Load stored bindings into a fresh server.
pub(crate) fn restore(store: &Store, server: &mut Server) {
    let (now, unix) = (Instant::now(), unix_now());
    let rows = match store.load_bindings(unix) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not load SIP bindings; devices must register again");
            return;
        }
    };
    let mut restored = 0;
    for row in rows {
        let (Some(transport), Ok(local), Ok(remote)) = (
            Transport::parse(&row.transport),
            row.local.parse(),
            row.remote.parse(),
        ) else {
            continue;
        };
        // Clamped: a hand-edited database must not overflow the clock.
        let left = Duration::from_secs(
            u64::try_from(row.expires_unix - unix)
                .unwrap_or(0)
                .min(MAX_LEFT),
        );
        let binding = Binding {
            contact: row.contact,
            instance: row.instance,
            reg_id: row.reg_id,
            expires_at: now + left,
            call_id: row.call_id,
            cseq: row.cseq,
            flow: Flow {
                transport,
                local,
                remote,
                conn: None,
            },
        };
        server.restore_binding(&row.account, binding);
        restored += 1;
    }
    if restored > 0 {
        tracing::info!(bindings = restored, "SIP registrations restored");
    }
}
