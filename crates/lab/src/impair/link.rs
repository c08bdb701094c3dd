//! The driver: two TUN devices in the core namespace (one per direction), policy routing
//! that steers one link's packets through them, and a thread per direction running an
//! [`Impairer`].
//!
//! Routing in the core (link `l3` of a NAT whose WAN address is 203.0.113.14):
//! ```text
//! prio 100+id : iif id<id>               lookup main        (impaired, going down: deliver)
//! prio 1000+id: iif l3                   lookup 1000+id -> default dev iu<id>
//! prio 2000+id: to 203.0.113.14/32       lookup 1300+id -> default dev id<id>
//! ```
//! Packets written back into `iu<id>` are forwarded by the main table (and may then be
//! steered into another link's downstream TUN, so impaired links compose).

use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{sys, ImpairStats, Impairer, Impairment};
use crate::cmd::{ip_in, sysctl_in};
use crate::{Error, Result};

/// Rule priorities (plus the link id, at most 255): delivery after the downstream TUN
/// first, then every link's upstream steering, then every link's downstream steering, so a
/// packet crossing two impaired links goes up through one and down through the other.
const DELIVER_PRIO: u32 = 100;
const UP_PRIO: u32 = 1000;
const DOWN_PRIO: u32 = 2000;
/// Routing tables (plus the link id): 1000..=1255 upstream, 1300..=1555 downstream.
const UP_TABLE: u32 = 1000;
const DOWN_TABLE: u32 = 1300;

/// Longest sleep of a router thread, so it notices `stop` promptly.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// A running impairment of one link (both directions). Clones share the link.
#[derive(Debug, Clone)]
pub struct ImpairedLink {
    shared: Arc<Shared>,
}

/// Counters of both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Toward the internet (from the NAT or host).
    pub up: ImpairStats,
    /// From the internet toward the NAT or host.
    pub down: ImpairStats,
}

#[derive(Debug)]
struct Shared {
    name: String,
    core: String,
    id: u8,
    stop: AtomicBool,
    up: Direction,
    down: Direction,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Direction {
    config: Mutex<Impairment>,
    stats: Mutex<ImpairStats>,
}

impl ImpairedLink {
    /// Starts impairing link `iface` of core namespace `core`; `destination` is the CIDR
    /// reached through that link. `id` must be unique within the core.
    pub(crate) fn start(
        core: &str,
        id: u8,
        iface: &str,
        destination: &str,
        up: Impairment,
        down: Impairment,
    ) -> Result<Self> {
        for config in [&up, &down] {
            config
                .validate()
                .map_err(|msg| impair_error(iface, std::io::Error::other(msg)))?;
        }
        let shared = Arc::new(Shared {
            name: format!("{core}/{iface}"),
            core: core.to_owned(),
            id,
            stop: AtomicBool::new(false),
            up: Direction {
                config: Mutex::new(up),
                ..Direction::default()
            },
            down: Direction {
                config: Mutex::new(down),
                ..Direction::default()
            },
            threads: Mutex::new(Vec::new()),
        });
        let link = Self { shared };
        let (up_tun, down_tun) = (format!("iu{id}"), format!("id{id}"));
        link.spawn_router(core, &up_tun, true, u64::from(id) * 2)?;
        link.spawn_router(core, &down_tun, false, u64::from(id) * 2 + 1)?;
        let result = route_through(core, id, iface, destination, &up_tun, &down_tun);
        if let Err(err) = result {
            link.stop();
            return Err(err);
        }
        tracing::info!(link = %link.shared.name, ?up, ?down, "link impaired");
        Ok(link)
    }

    /// Changes the impairment toward the internet, effective for the next packet.
    pub fn set_up(&self, config: Impairment) -> Result<()> {
        self.set(&self.shared.up, config)
    }

    /// Changes the impairment toward the NAT or host, effective for the next packet.
    pub fn set_down(&self, config: Impairment) -> Result<()> {
        self.set(&self.shared.down, config)
    }

    /// Packet counters so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            up: *lock(&self.shared.up.stats),
            down: *lock(&self.shared.down.stats),
        }
    }

    /// Stops impairing: the router threads end, their TUN devices and routing rules go,
    /// and the link forwards normally again (it can be impaired anew). The lab calls this
    /// on drop.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        if threads.is_empty() {
            return; // already stopped
        }
        for thread in threads {
            let _ = thread.join();
        }
        // The TUNs (and the routes through them) went away with the threads' files; the
        // rules would only point at empty tables, but remove them so the link can be
        // impaired again.
        let id = u32::from(self.shared.id);
        for prio in [DELIVER_PRIO + id, UP_PRIO + id, DOWN_PRIO + id] {
            let _ = ip_in(
                &self.shared.core,
                &["rule", "del", "prio", &prio.to_string()],
            );
        }
        tracing::info!(link = %self.shared.name, "impairment removed");
    }

    fn set(&self, direction: &Direction, config: Impairment) -> Result<()> {
        config
            .validate()
            .map_err(|msg| impair_error(&self.shared.name, std::io::Error::other(msg)))?;
        *lock(&direction.config) = config;
        Ok(())
    }

    /// Starts the thread for one direction and waits until its TUN device exists.
    fn spawn_router(&self, core: &str, tun: &str, up: bool, seed: u64) -> Result<()> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let shared = Arc::clone(&self.shared);
        let (core_ns, tun_name) = (core.to_owned(), tun.to_owned());
        let thread = std::thread::Builder::new()
            .name(format!("impair-{tun}"))
            .spawn(move || {
                let opened = sys::enter_netns(&core_ns).and_then(|()| sys::open_tun(&tun_name));
                match opened {
                    Ok(file) => {
                        let _ = ready_tx.send(Ok(()));
                        run_router(&shared, up, file, seed);
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })?;
        lock(&self.shared.threads).push(thread);
        let opened = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("router thread died")));
        opened.map_err(|source| impair_error(tun, source))
    }
}

/// The per-direction loop: read packets, impair, write back when due, until stopped.
fn run_router(shared: &Shared, up: bool, mut tun: File, seed: u64) {
    let direction = if up { &shared.up } else { &shared.down };
    let mut impairer = Impairer::new(seed);
    let mut buffer = vec![0u8; 65_536];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = impairer
            .poll_timeout()
            .map_or(IDLE_WAIT, |due| due.saturating_duration_since(now));
        match sys::wait_readable(&tun, wait.min(IDLE_WAIT)) {
            Ok(true) => match tun.read(&mut buffer) {
                Ok(len) => {
                    let config = *lock(&direction.config);
                    impairer.handle_packet(Instant::now(), &config, buffer[..len].to_vec());
                }
                Err(err) => tracing::debug!(link = %shared.name, %err, "TUN read failed"),
            },
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(link = %shared.name, %err, "impairment router stopped");
                break;
            }
        }
        let now = Instant::now();
        while let Some(packet) = impairer.poll_transmit(now) {
            if let Err(err) = tun.write_all(&packet) {
                tracing::debug!(link = %shared.name, %err, "TUN write failed");
            }
        }
        *lock(&direction.stats) = impairer.stats();
    }
}

/// Installs the policy routing that sends the link's traffic through the two TUNs.
fn route_through(
    core: &str,
    id: u8,
    iface: &str,
    destination: &str,
    up_tun: &str,
    down_tun: &str,
) -> Result<()> {
    let id = u32::from(id);
    let (up_table, down_table) = ((UP_TABLE + id).to_string(), (DOWN_TABLE + id).to_string());
    for tun in [up_tun, down_tun] {
        // IPv4 only: otherwise the kernel's own IPv6 chatter (MLD, router solicitations)
        // would be routed into the TUN and counted as traffic.
        sysctl_in(core, &format!("net.ipv6.conf.{tun}.disable_ipv6"), "1")?;
        ip_in(core, &["link", "set", tun, "up"])?;
    }
    ip_in(
        core,
        &["route", "add", "default", "dev", up_tun, "table", &up_table],
    )?;
    ip_in(
        core,
        &[
            "route",
            "add",
            "default",
            "dev",
            down_tun,
            "table",
            &down_table,
        ],
    )?;
    let rules = [
        (DELIVER_PRIO, ["iif", down_tun, "lookup", "main"]),
        (UP_PRIO, ["iif", iface, "lookup", &up_table]),
        (DOWN_PRIO, ["to", destination, "lookup", &down_table]),
    ];
    for (base, selector) in rules {
        let prio = (base + id).to_string();
        let mut args = vec!["rule", "add"];
        args.extend(selector);
        args.extend(["prio", &prio]);
        ip_in(core, &args)?;
    }
    Ok(())
}

fn impair_error(link: &str, source: std::io::Error) -> Error {
    Error::Impair {
        link: link.to_owned(),
        source,
    }
}

/// Locks, ignoring poisoning (the guarded values are plain counters and settings).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
