//! A multi-homed host: one device on two NATs' LANs at once, like a phone with
//! Wi-Fi and mobile data. Its first uplink is preferred; taking it down moves
//! the traffic to the second (the kernel drops the routes of a downed link).
//!
//! ```text
//!   NAT 1 lan ── eth0 10.1.0.x (default route, metric 10)
//!                 host
//!   NAT 2 lan ── eth1 10.2.0.x (default route, metric 100)
//! ```

use std::net::Ipv4Addr;

use super::{Host, Lab, Nat};
use crate::cmd::{ip_in, sysctl_in};
use crate::{Error, Result};

/// Route metric of each uplink: the first is preferred while it is up.
const METRICS: [u32; 2] = [10, 100];
/// Interface names of the two uplinks.
const IFACES: [&str; 2] = ["eth0", "eth1"];

/// A host with two uplinks behind two NATs; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiHomedHost {
    host: Host,
    gateways: [Ipv4Addr; 2],
}

impl MultiHomedHost {
    /// The host (to spawn processes in); its `ips()` are the two uplinks' addresses.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The address on uplink `link` (0: preferred, 1: backup).
    pub fn ip(&self, link: usize) -> Ipv4Addr {
        self.host.ips[link.min(1)] // invariant: built with exactly two addresses
    }

    /// Takes uplink `link` down (as when Wi-Fi drops): its routes vanish and
    /// traffic leaves through the other uplink from the other address.
    pub fn link_down(&self, link: usize) -> Result<()> {
        ip_in(&self.host.ns, &["link", "set", IFACES[link.min(1)], "down"]).map(|_| ())
    }

    /// Brings uplink `link` back with its default route.
    pub fn link_up(&self, link: usize) -> Result<()> {
        let link = link.min(1);
        ip_in(&self.host.ns, &["link", "set", IFACES[link], "up"])?;
        add_default_route(
            &self.host.ns,
            self.gateways[link],
            IFACES[link],
            METRICS[link],
        )
    }
}

impl Lab {
    /// Adds a host with uplink 0 on `first`'s LAN (preferred) and uplink 1 on
    /// `second`'s LAN. The NATs should differ, so a move changes the public address.
    pub fn add_multihomed_host(&mut self, first: &Nat, second: &Nat) -> Result<MultiHomedHost> {
        if first.index == second.index {
            return Err(Error::Exhausted(
                "a multi-homed host needs two different NATs",
            ));
        }
        let ns = format!("{}-m{}x{}", self.prefix, first.index, second.index);
        self.add_namespace(&ns, false)?;
        // Replies may arrive on either uplink while routes change: loose reverse-path checks.
        sysctl_in(&ns, "net.ipv4.conf.all.rp_filter", "2")?;
        sysctl_in(&ns, "net.ipv4.conf.default.rp_filter", "2")?;
        let mut ips = Vec::with_capacity(2);
        for (link, nat) in [first, second].into_iter().enumerate() {
            ips.push(self.attach_uplink(nat, &ns, link)?);
        }
        Ok(MultiHomedHost {
            host: Host { ns, ips },
            gateways: [first.lan.gateway(), second.lan.gateway()],
        })
    }

    /// A veth from `nat`'s LAN bridge to `ns` as uplink `link`, with its default route.
    fn attach_uplink(&mut self, nat: &Nat, ns: &str, link: usize) -> Result<Ipv4Addr> {
        let iface = IFACES[link];
        let ip = self.attach_veth_to_lan(nat, ns, iface)?;
        add_default_route(ns, nat.lan.gateway(), iface, METRICS[link])?;
        Ok(ip)
    }
}

fn add_default_route(ns: &str, gateway: Ipv4Addr, iface: &str, metric: u32) -> Result<()> {
    ip_in(
        ns,
        &[
            "route",
            "add",
            "default",
            "via",
            &gateway.to_string(),
            "dev",
            iface,
            "metric",
            &metric.to_string(),
        ],
    )
    .map(|_| ())
}
