//! A minimal Ogg Opus (RFC 7845) writer and reader for the interop tests,
//! on top of the `ogg` crate's page framing.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use ogg::{PacketReader, PacketWriteEndInfo, PacketWriter};

/// Pre-skip we declare for opus-rs streams (libopus's 48 kHz lookahead).
pub const PRE_SKIP: u16 = 312;
const SERIAL: u32 = 0x6e61_7474; // "natt"

/// Writes mono Opus `packets`, each `ticks` long at 48 kHz, to `path`.
pub fn write(path: &Path, packets: &[Vec<u8>], ticks: u64, input_rate: u32) {
    let file = BufWriter::new(File::create(path).expect("create ogg file"));
    let mut w = PacketWriter::new(file);
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family
    w.write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
        .expect("write OpusHead");
    let vendor = b"natter-media test";
    let mut tags = Vec::new();
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    w.write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
        .expect("write OpusTags");
    for (i, p) in packets.iter().enumerate() {
        let granule = u64::from(PRE_SKIP) + (i as u64 + 1) * ticks;
        let end = if i + 1 == packets.len() {
            PacketWriteEndInfo::EndStream
        } else if (i + 1) % 50 == 0 {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        w.write_packet(p.clone(), SERIAL, end, granule)
            .expect("write audio packet");
    }
}

/// Reads an Ogg Opus file: (pre-skip, channels, audio packets).
pub fn read(path: &Path) -> (u16, u8, Vec<Vec<u8>>) {
    let file = BufReader::new(File::open(path).expect("open ogg file"));
    let mut r = PacketReader::new(file);
    let head = r.read_packet_expected().expect("OpusHead packet");
    assert_eq!(&head.data[..8], b"OpusHead", "not an Ogg Opus stream");
    let pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]);
    let channels = head.data[9];
    let tags = r.read_packet_expected().expect("OpusTags packet");
    assert_eq!(&tags.data[..8], b"OpusTags");
    let mut packets = Vec::new();
    while let Some(p) = r.read_packet().expect("readable Ogg pages") {
        packets.push(p.data);
    }
    (pre_skip, channels, packets)
}
