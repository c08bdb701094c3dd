//! Lab topologies: a core router ("the internet"), a server with two public addresses,
//! NAT routers of several kinds, hosts behind them and public hosts.
//!
//! ```text
//!   server 192.0.2.10 + .11 ──┐
//!                              core (router, 192.0.2.1, 203.0.113.x/30 links)
//!   public host 203.0.113.6 ──┤
//!   NAT wan 203.0.113.2 ──────┘── NAT lan bridge 10.1.0.1/24 ── hosts 10.1.0.10, .11 ...
//! ```

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cmd::{ip_in, iptables_in, run, sysctl_in};
use crate::impair::{ImpairedLink, Impairment};
use crate::process::LabProcess;
use crate::{Error, Result};

mod multihome;
pub use multihome::MultiHomedHost;

/// Address of the core router on the server segment.
const CORE_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The server's two public addresses (two, so RFC 5780 `--stun-alt` works).
const SERVER_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 10), Ipv4Addr::new(192, 0, 2, 11)];
/// Namespace names start with this, then the pid: `nl<pid>x<n>-<role>`.
const PREFIX: &str = "nl";

/// How a NAT router treats traffic from its LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NatKind {
    /// `MASQUERADE`: endpoint-independent mapping, address-and-port-dependent filtering
    /// (Linux conntrack), i.e. a port-restricted cone.
    PortRestrictedCone,
    /// `MASQUERADE --random-fully`: a new random public port per destination (symmetric).
    Symmetric,
    /// Cone NAT that forwards no UDP at all: only TCP (and ICMP) leaves.
    UdpBlocked,
}

/// A machine in the lab: one network namespace with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    ns: String,
    ips: Vec<Ipv4Addr>,
}

impl Host {
    /// The namespace name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The host's (first) address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ips[0] // invariant: every host is created with at least one address
    }

    /// All addresses of the host (the server has two).
    pub fn ips(&self) -> &[Ipv4Addr] {
        &self.ips
    }

    /// Starts `program args...` inside this host; output is collected, the process is
    /// killed when the returned handle is dropped.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<LabProcess> {
        LabProcess::start(&self.ns, program, args)
    }

    /// Runs `program args...` inside this host to completion, killing it after `timeout`.
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<std::process::Output> {
        self.spawn(program, args)?.finish(timeout)
    }
}

/// A NAT router: hosts added behind it share its public (WAN) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat {
    index: u8,
    kind: NatKind,
    router: Host,
    wan_ip: Ipv4Addr,
    lan: Lan,
    link: Option<u8>,
}

impl Nat {
    /// The router itself (to run diagnostics such as `conntrack -L` or `iptables -L`).
    pub fn router(&self) -> &Host {
        &self.router
    }

    /// The NAT's outside address (public, or carrier-grade 100.64/10 when behind a CGN).
    pub fn wan_ip(&self) -> Ipv4Addr {
        self.wan_ip
    }

    /// The router's address on its LAN (the hosts' default gateway).
    pub fn lan_gateway(&self) -> Ipv4Addr {
        self.lan.gateway()
    }

    /// What kind of NAT this is.
    pub fn kind(&self) -> NatKind {
        self.kind
    }
}

/// A whole lab. Dropping it kills every process in its namespaces and deletes them,
/// also when a test panics.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    core: String,
    server: Host,
    namespaces: Vec<String>,
    next_link: u8,
    next_nat: u8,
    hosts_behind: Vec<u8>,
    impaired: Vec<ImpairedLink>,
}

impl Lab {
    /// Builds the core router and the server host. `name` is a short label for logs.
    pub fn new(name: &str) -> Result<Self> {
        crate::lab_available().map_err(Error::Unavailable)?;
        sweep_stale_namespaces();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}x{n}", std::process::id());
        tracing::info!(lab = name, %prefix, "building network lab");
        let core = format!("{prefix}-core");
        let mut lab = Self {
            server: Host {
                ns: format!("{prefix}-server"),
                ips: SERVER_IPS.to_vec(),
            },
            prefix,
            core: core.clone(),
            namespaces: Vec::new(),
            next_link: 0,
            next_nat: 1,
            hosts_behind: vec![0],
            impaired: Vec::new(),
        };
        lab.add_namespace(&core, true)?;
        lab.build_server()?;
        Ok(lab)
    }

    /// The server host: two public addresses, [`Lab::server_ips`].
    pub fn server_host(&self) -> &Host {
        &self.server
    }

    /// The server's two public addresses (primary, alternate).
    pub fn server_ips(&self) -> (Ipv4Addr, Ipv4Addr) {
        (SERVER_IPS[0], SERVER_IPS[1])
    }

    /// Adds a NAT router of `kind` attached to the internet.
    pub fn add_nat(&mut self, kind: NatKind) -> Result<Nat> {
        let (index, router) = self.new_router()?;
        let link = self.attach_to_core(&router)?;
        self.finish_nat(
            index,
            kind,
            router,
            link.device_ip,
            Some(link.index),
            Lan::private(index),
        )
    }

    /// Adds a carrier-grade NAT of `kind` on the internet whose inside is 100.64.N.0/24;
    /// put home NATs behind it with [`Lab::add_nat_behind`] (two NATs in a row).
    pub fn add_carrier_nat(&mut self, kind: NatKind) -> Result<Nat> {
        let (index, router) = self.new_router()?;
        let link = self.attach_to_core(&router)?;
        self.finish_nat(
            index,
            kind,
            router,
            link.device_ip,
            Some(link.index),
            Lan::carrier(index),
        )
    }

    /// Adds a NAT router of `kind` whose outside is on `outer`'s LAN.
    pub fn add_nat_behind(&mut self, outer: &Nat, kind: NatKind) -> Result<Nat> {
        let (index, router) = self.new_router()?;
        let wan_ip = self.attach_to_lan(outer, &router.ns, "wan")?;
        self.finish_nat(index, kind, router, wan_ip, None, Lan::private(index))
    }

    /// Adds a host on `nat`'s LAN (call several times for several hosts behind one NAT).
    pub fn add_host_behind(&mut self, nat: &Nat) -> Result<Host> {
        let seq = self
            .hosts_behind
            .get(usize::from(nat.index))
            .copied()
            .unwrap_or(0);
        let ns = format!("{}-h{}n{seq}", self.prefix, nat.index);
        self.add_namespace(&ns, false)?;
        let ip = self.attach_to_lan(nat, &ns, "eth0")?;
        Ok(Host { ns, ips: vec![ip] })
    }

    /// Adds a host with a public address and no NAT (its own /30 link to the core).
    pub fn add_public_host(&mut self) -> Result<Host> {
        let ns = format!("{}-p{}", self.prefix, self.next_link);
        self.add_namespace(&ns, false)?;
        let host = Host {
            ns,
            ips: vec![Ipv4Addr::UNSPECIFIED],
        };
        let link = self.attach_to_core(&host)?;
        Ok(Host {
            ips: vec![link.device_ip],
            ..host
        })
    }

    /// Impairs the link between the internet and `nat` (both directions, configured
    /// separately) with the userspace TUN router; see [`crate::impair`].
    pub fn impair_nat_link(
        &mut self,
        nat: &Nat,
        up: Impairment,
        down: Impairment,
    ) -> Result<ImpairedLink> {
        let link = nat.link.ok_or(Error::Exhausted(
            "only NATs attached to the core can be impaired",
        ))?;
        let destination = format!("{}/32", nat.wan_ip);
        self.impair(link, &format!("l{link}"), &destination, up, down)
    }

    /// Impairs the link between the internet and a public host.
    pub fn impair_public_host_link(
        &mut self,
        host: &Host,
        up: Impairment,
        down: Impairment,
    ) -> Result<ImpairedLink> {
        let link = self
            .link_of_device_ip(host.ip())
            .ok_or(Error::Exhausted("not a public host of this lab"))?;
        self.impair(
            link,
            &format!("l{link}"),
            &format!("{}/32", host.ip()),
            up,
            down,
        )
    }

    /// Impairs the server's link (affects every client talking to the server).
    pub fn impair_server_link(&mut self, up: Impairment, down: Impairment) -> Result<ImpairedLink> {
        self.impair(255, "srv", "192.0.2.0/24", up, down)
    }

    fn impair(
        &mut self,
        id: u8,
        iface: &str,
        destination: &str,
        up: Impairment,
        down: Impairment,
    ) -> Result<ImpairedLink> {
        let handle = ImpairedLink::start(&self.core, id, iface, destination, up, down)?;
        self.impaired.push(handle.clone());
        Ok(handle)
    }

    fn link_of_device_ip(&self, ip: Ipv4Addr) -> Option<u8> {
        (0..self.next_link).find(|&i| CoreLink::new(i).is_some_and(|link| link.device_ip == ip))
    }

    fn new_router(&mut self) -> Result<(u8, Host)> {
        let index = self.next_nat;
        self.next_nat = index
            .checked_add(1)
            .filter(|n| *n < 250)
            .ok_or(Error::Exhausted("too many NATs"))?;
        self.hosts_behind.push(0);
        let ns = format!("{}-nat{index}", self.prefix);
        self.add_namespace(&ns, true)?;
        Ok((
            index,
            Host {
                ns,
                ips: vec![Ipv4Addr::UNSPECIFIED],
            },
        ))
    }

    fn finish_nat(
        &mut self,
        index: u8,
        kind: NatKind,
        router: Host,
        wan_ip: Ipv4Addr,
        link: Option<u8>,
        lan: Lan,
    ) -> Result<Nat> {
        let ns = &router.ns;
        ip_in(ns, &["link", "add", "lan", "type", "bridge"])?;
        ip_in(ns, &["addr", "add", &lan.gateway_cidr(), "dev", "lan"])?;
        ip_in(ns, &["link", "set", "lan", "up"])?;
        apply_nat_rules(ns, kind)?;
        let router = Host {
            ips: vec![wan_ip, lan.gateway()],
            ..router
        };
        Ok(Nat {
            index,
            kind,
            router,
            wan_ip,
            lan,
            link,
        })
    }

    /// Creates a veth from `device_ns` (named `device_if`) to `nat`'s LAN bridge,
    /// with the default route through the NAT.
    fn attach_to_lan(&mut self, nat: &Nat, device_ns: &str, device_if: &str) -> Result<Ipv4Addr> {
        let ip = self.attach_veth_to_lan(nat, device_ns, device_if)?;
        ip_in(
            device_ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &nat.lan.gateway().to_string(),
            ],
        )?;
        Ok(ip)
    }

    /// Creates a veth from `device_ns` (named `device_if`) to `nat`'s LAN bridge,
    /// addressed and up, without a route.
    fn attach_veth_to_lan(
        &mut self,
        nat: &Nat,
        device_ns: &str,
        device_if: &str,
    ) -> Result<Ipv4Addr> {
        let slot = usize::from(nat.index);
        let seq = self.hosts_behind[slot]; // invariant: pushed in new_router for every index
        if seq >= 200 {
            return Err(Error::Exhausted("too many hosts behind one NAT"));
        }
        self.hosts_behind[slot] = seq + 1;
        let ip = nat.lan.host(seq);
        let router_if = format!("h{seq}");
        ip_in(
            &nat.router.ns,
            &[
                "link", "add", &router_if, "type", "veth", "peer", "name", device_if, "netns",
                device_ns,
            ],
        )?;
        ip_in(
            &nat.router.ns,
            &["link", "set", &router_if, "master", "lan", "up"],
        )?;
        ip_in(
            device_ns,
            &["addr", "add", &format!("{ip}/24"), "dev", device_if],
        )?;
        ip_in(device_ns, &["link", "set", device_if, "up"])?;
        Ok(ip)
    }

    /// Creates a /30 link from the core to `device` (interface `wan` or `eth0` there).
    fn attach_to_core(&mut self, device: &Host) -> Result<CoreLink> {
        let link =
            CoreLink::new(self.next_link).ok_or(Error::Exhausted("too many links on the core"))?;
        self.next_link += 1;
        let device_if = if device.ns.contains("-nat") {
            "wan"
        } else {
            "eth0"
        };
        let core_if = format!("l{}", link.index);
        ip_in(
            &self.core,
            &[
                "link", "add", &core_if, "type", "veth", "peer", "name", device_if, "netns",
                &device.ns,
            ],
        )?;
        ip_in(
            &self.core,
            &[
                "addr",
                "add",
                &format!("{}/30", link.core_ip),
                "dev",
                &core_if,
            ],
        )?;
        ip_in(&self.core, &["link", "set", &core_if, "up"])?;
        ip_in(
            &device.ns,
            &[
                "addr",
                "add",
                &format!("{}/30", link.device_ip),
                "dev",
                device_if,
            ],
        )?;
        ip_in(&device.ns, &["link", "set", device_if, "up"])?;
        ip_in(
            &device.ns,
            &["route", "add", "default", "via", &link.core_ip.to_string()],
        )?;
        Ok(link)
    }

    fn build_server(&mut self) -> Result<()> {
        let ns = self.server.ns.clone();
        self.add_namespace(&ns, false)?;
        ip_in(
            &self.core,
            &[
                "link", "add", "srv", "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        ip_in(
            &self.core,
            &[
                "addr",
                "add",
                &format!("{CORE_SERVER_SIDE}/24"),
                "dev",
                "srv",
            ],
        )?;
        ip_in(&self.core, &["link", "set", "srv", "up"])?;
        for ip in SERVER_IPS {
            ip_in(&ns, &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        }
        ip_in(&ns, &["link", "set", "eth0", "up"])?;
        ip_in(
            &ns,
            &[
                "route",
                "add",
                "default",
                "via",
                &CORE_SERVER_SIDE.to_string(),
            ],
        )?;
        Ok(())
    }

    /// Creates namespace `ns` with loopback up; routers forward and skip reverse-path checks.
    fn add_namespace(&mut self, ns: &str, router: bool) -> Result<()> {
        run("ip", &["netns", "add", ns])?;
        self.namespaces.push(ns.to_owned());
        ip_in(ns, &["link", "set", "lo", "up"])?;
        if router {
            sysctl_in(ns, "net.ipv4.ip_forward", "1")?;
            sysctl_in(ns, "net.ipv4.conf.all.rp_filter", "0")?;
            sysctl_in(ns, "net.ipv4.conf.default.rp_filter", "0")?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for link in self.impaired.drain(..) {
            link.stop();
        }
        for ns in self.namespaces.iter().rev() {
            kill_namespace_processes(ns);
            if let Err(err) = run("ip", &["netns", "del", ns]) {
                tracing::warn!(%ns, %err, "could not delete lab namespace");
            }
        }
        tracing::info!(prefix = %self.prefix, "network lab torn down");
    }
}

/// The iptables rules that make a router a NAT of `kind`.
fn apply_nat_rules(ns: &str, kind: NatKind) -> Result<()> {
    let mut masquerade = vec![
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-o",
        "wan",
        "-j",
        "MASQUERADE",
    ];
    if kind == NatKind::Symmetric {
        masquerade.push("--random-fully");
    }
    iptables_in(ns, &masquerade)?;
    // Like a home router's firewall: unsolicited packets for the router itself are dropped
    // before conntrack confirms them. Otherwise a peer's hole-punching packet that arrives
    // first leaves a confirmed entry behind, the host's own packet to that peer clashes
    // with it, and MASQUERADE picks another public port: the mapping would change mid-punch.
    let drop_unsolicited = [
        "-A",
        "INPUT",
        "-i",
        "wan",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
        "DROP",
    ];
    iptables_in(ns, &drop_unsolicited)?;
    if kind == NatKind::UdpBlocked {
        iptables_in(ns, &["-A", "FORWARD", "-p", "udp", "-j", "DROP"])?;
    }
    Ok(())
}

/// SIGKILLs every process still inside namespace `ns`.
fn kill_namespace_processes(ns: &str) {
    let Ok(pids) = run("ip", &["netns", "pids", ns]) else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter(|pid| pid.parse::<u32>().is_ok())
    {
        let _ = run("kill", &["-KILL", pid]);
    }
}

/// Deletes namespaces left behind by lab processes that died without cleaning up
/// (SIGKILLed test binaries). Names carry the owner's pid: `nl<pid>x<n>-...`.
fn sweep_stale_namespaces() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for ns in list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if owner_pid(ns).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        {
            tracing::info!(%ns, "deleting stale lab namespace");
            kill_namespace_processes(ns);
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

/// The pid encoded in a lab namespace name, if `ns` is one.
fn owner_pid(ns: &str) -> Option<u32> {
    let rest = ns.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('x')?;
    tail.contains('-').then_some(())?;
    pid.parse().ok()
}

/// A point-to-point /30 between the core and one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CoreLink {
    index: u8,
    core_ip: Ipv4Addr,
    device_ip: Ipv4Addr,
}

impl CoreLink {
    /// Link `index`: /30s of 203.0.113.0/24, then of 198.51.100.0/24 (128 links in all).
    fn new(index: u8) -> Option<Self> {
        let (net, slot) = match index {
            0..=63 => ([203, 0, 113], index),
            64..=127 => ([198, 51, 100], index - 64),
            _ => return None,
        };
        let base = slot * 4;
        let ip = |last: u8| Ipv4Addr::new(net[0], net[1], net[2], base + last);
        Some(Self {
            index,
            core_ip: ip(1),
            device_ip: ip(2),
        })
    }
}

/// A NAT's inside network: a /24 with the router at .1 and devices from .10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lan {
    prefix: [u8; 3],
}

impl Lan {
    fn private(index: u8) -> Self {
        Self {
            prefix: [10, index, 0],
        }
    }

    fn carrier(index: u8) -> Self {
        Self {
            prefix: [100, 64, index],
        }
    }

    fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, 1)
    }

    fn gateway_cidr(&self) -> String {
        format!("{}/24", self.gateway())
    }

    fn host(&self, seq: u8) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, 10 + seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_links_use_documentation_ranges_without_overlap() {
        let first = CoreLink::new(0).unwrap();
        assert_eq!(
            (first.core_ip, first.device_ip),
            (Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2))
        );
        let last_a = CoreLink::new(63).unwrap();
        assert_eq!(last_a.device_ip, Ipv4Addr::new(203, 0, 113, 254));
        let first_b = CoreLink::new(64).unwrap();
        assert_eq!(first_b.core_ip, Ipv4Addr::new(198, 51, 100, 1));
        assert!(CoreLink::new(128).is_none());
        let all: std::collections::HashSet<_> = (0..128)
            .flat_map(|i| {
                let link = CoreLink::new(i).unwrap();
                [link.core_ip, link.device_ip]
            })
            .collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn lans_are_private_or_carrier_grade() {
        assert_eq!(Lan::private(3).host(0), Ipv4Addr::new(10, 3, 0, 10));
        assert_eq!(Lan::private(3).gateway_cidr(), "10.3.0.1/24");
        let carrier = Lan::carrier(2).host(1);
        assert_eq!(carrier, Ipv4Addr::new(100, 64, 2, 11));
        assert!(carrier.octets()[0] == 100 && (64..128).contains(&carrier.octets()[1]));
    }

    #[test]
    fn stale_namespace_names_carry_their_owner() {
        assert_eq!(owner_pid("nl1234x0-core"), Some(1234));
        assert_eq!(owner_pid("nl1234x17-h1n0"), Some(1234));
        assert_eq!(owner_pid("nlcheck-1234"), None);
        assert_eq!(owner_pid("netns1"), None);
        assert_eq!(owner_pid("nl12x"), None);
    }
}
