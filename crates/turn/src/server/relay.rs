//! The relay hot paths: ChannelData and Send from clients, datagrams from peers.
//! No allocation per packet: client data is borrowed, peer data is framed in place.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use rand::Rng;

use super::{AllocationId, FiveTuple, Forward, RelayAllocator, RelayId, Server};
use crate::stun::{
    attr_type, message_type, ChannelData, ChannelNumber, Class, Method, MAGIC_COOKIE,
};

/// Bytes [`Server::handle_peer`] needs free before the data: a Data indication
/// header with an IPv6 XOR-PEER-ADDRESS (20 + 24 + 4).
pub const PEER_HEADROOM: usize = 48;
/// Bytes needed free after the data for 4-byte padding.
pub const PEER_TAILROOM: usize = 3;

/// Where framed peer data goes: `buf[range]` to the client `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToClient {
    pub to: FiveTuple,
    pub range: Range<usize>,
}

impl<A: RelayAllocator> Server<A> {
    /// A datagram from `peer` arrived on relay socket `relay`, its payload at
    /// `buf[data]` with [`PEER_HEADROOM`] bytes free before and [`PEER_TAILROOM`]
    /// after. Frames it in place for the client; `None` drops it.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: SocketAddr,
        buf: &mut [u8],
        data: Range<usize>,
    ) -> Option<ToClient> {
        if data.start < PEER_HEADROOM
            || data.end + PEER_TAILROOM > buf.len()
            || data.len() > usize::from(u16::MAX) - 64
        {
            self.counters.malformed += 1;
            return None;
        }
        let Some(&id) = self.by_relay.get(&relay) else {
            self.counters.dropped_no_route += 1;
            return None;
        };
        // The id came from by_relay, which only holds live allocations.
        let a = self.allocations.get_mut(id.0 as usize)?.as_mut()?;
        if !a.has_permission(now, peer.ip()) {
            self.counters.dropped_no_route += 1;
            return None;
        }
        if !a.spend(now, data.len()) {
            self.counters.dropped_bandwidth += 1;
            return None;
        }
        let to = a.client;
        let stream = to.transport.is_stream();
        let range = match a.channel_by_peer(now, peer) {
            Some(ch) => frame_channel(buf, &data, ch.number, stream),
            None => frame_data_indication(buf, &data, peer, self.rng.gen()),
        };
        self.counters.packets_to_clients += 1;
        self.counters.bytes_to_clients += data.len() as u64;
        Some(ToClient { to, range })
    }

    /// ChannelData from a client.
    pub(crate) fn channel_from_client<'b>(
        &mut self,
        now: Instant,
        tuple: &FiveTuple,
        bytes: &'b [u8],
    ) -> Option<Forward<'b>> {
        let Ok(cd) = ChannelData::decode(bytes) else {
            self.counters.malformed += 1;
            return None;
        };
        let Some(&id) = self.by_tuple.get(tuple) else {
            self.counters.dropped_no_route += 1;
            return None;
        };
        let peer = self
            .allocation(id)?
            .channel_by_number(now, cd.channel.get())
            .map(|c| c.peer);
        let Some(peer) = peer else {
            self.counters.dropped_no_route += 1;
            return None;
        };
        self.forward_to_peer(now, id, peer, cd.data)
    }

    /// Permission and bandwidth checks for client → peer data.
    pub(crate) fn forward_to_peer<'b>(
        &mut self,
        now: Instant,
        id: AllocationId,
        peer: SocketAddr,
        data: &'b [u8],
    ) -> Option<Forward<'b>> {
        let a = self.allocation_mut(id)?;
        if !a.has_permission(now, peer.ip()) {
            self.counters.dropped_no_route += 1;
            return None;
        }
        if !a.spend(now, data.len()) {
            self.counters.dropped_bandwidth += 1;
            return None;
        }
        let relay = a.relay;
        self.counters.packets_to_peers += 1;
        self.counters.bytes_to_peers += data.len() as u64;
        Some(Forward { relay, peer, data })
    }
}

fn pad_after(buf: &mut [u8], end: usize) -> usize {
    let padded = (end + 3) & !3;
    buf[end..padded].fill(0);
    padded
}

fn frame_channel(
    buf: &mut [u8],
    data: &Range<usize>,
    ch: ChannelNumber,
    stream: bool,
) -> Range<usize> {
    let start = data.start - 4;
    let mut header = [0u8; 4];
    // data.len() was checked to fit in u16 by the caller.
    ChannelData::write_header(ch, data.len() as u16, &mut header);
    buf[start..data.start].copy_from_slice(&header);
    let end = if stream {
        start + 4 + pad_after(buf[start + 4..].as_mut(), data.len())
    } else {
        data.end
    };
    start..end
}

fn frame_data_indication(
    buf: &mut [u8],
    data: &Range<usize>,
    peer: SocketAddr,
    tid: [u8; 12],
) -> Range<usize> {
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let start = data.start - (20 + 4 + addr_len + 4);
    let padded_end = pad_after(buf, data.end);
    let msg_len = padded_end - start - 20;
    let mut w = start;
    let mut put = |bytes: &[u8]| {
        buf[w..w + bytes.len()].copy_from_slice(bytes);
        w += bytes.len();
    };
    put(&message_type(Class::Indication, Method::DATA).to_be_bytes());
    put(&(msg_len as u16).to_be_bytes());
    put(&MAGIC_COOKIE.to_be_bytes());
    put(&tid);
    put(&attr_type::XOR_PEER_ADDRESS.to_be_bytes());
    put(&(addr_len as u16).to_be_bytes());
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(&tid);
    let port = peer.port().to_be_bytes();
    put(&[
        0,
        if peer.is_ipv4() { 1 } else { 2 },
        port[0] ^ mask[0],
        port[1] ^ mask[1],
    ]);
    match peer.ip() {
        std::net::IpAddr::V4(ip) => {
            let o = ip.octets();
            put(&[
                o[0] ^ mask[0],
                o[1] ^ mask[1],
                o[2] ^ mask[2],
                o[3] ^ mask[3],
            ]);
        }
        std::net::IpAddr::V6(ip) => {
            let mut o = ip.octets();
            o.iter_mut().zip(mask).for_each(|(b, m)| *b ^= m);
            put(&o);
        }
    }
    put(&attr_type::DATA.to_be_bytes());
    put(&(data.len() as u16).to_be_bytes());
    start..padded_end
}
