//! TURN ChannelData messages (RFC 8656 §12.4).

use crate::StunError;

/// A channel number in 0x4000..=0x7FFF.
///
/// RFC 8656 narrowed the range to 0x4000-0x4FFF, but RFC 5766 clients (coturn's
/// among them) still pick numbers up to 0x7FFE, so the full RFC 5766 range is
/// accepted: every such number is unambiguous on the wire (first bits 01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelNumber(u16);

impl ChannelNumber {
    pub const MIN: u16 = 0x4000;
    pub const MAX: u16 = 0x7FFF;

    pub fn new(n: u16) -> Result<Self, StunError> {
        if (Self::MIN..=Self::MAX).contains(&n) {
            Ok(ChannelNumber(n))
        } else {
            Err(StunError::BadChannel(n))
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

/// A ChannelData message borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: ChannelNumber,
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Parse a datagram or stream frame; trailing padding (up to the frame end) is allowed.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, StunError> {
        if bytes.len() < 4 {
            return Err(StunError::Truncated {
                need: 4,
                have: bytes.len(),
            });
        }
        let channel = ChannelNumber::new(u16::from_be_bytes([bytes[0], bytes[1]]))?;
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let data = bytes.get(4..4 + len).ok_or(StunError::Truncated {
            need: 4 + len,
            have: bytes.len(),
        })?;
        Ok(ChannelData { channel, data })
    }

    /// True when the first byte says ChannelData (0b01xxxxxx).
    pub fn is_channel_data(bytes: &[u8]) -> bool {
        bytes.first().is_some_and(|b| b >> 6 == 1)
    }

    /// Write the 4-byte header for `len` data bytes into `header`.
    pub fn write_header(channel: ChannelNumber, len: u16, header: &mut [u8; 4]) {
        header[..2].copy_from_slice(&channel.0.to_be_bytes());
        header[2..].copy_from_slice(&len.to_be_bytes());
    }

    /// Encode with `pad` = true for streams (TCP/TLS need 4-byte padding).
    pub fn encode(&self, pad: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 7);
        out.extend_from_slice(&self.channel.0.to_be_bytes());
        out.extend_from_slice(&(self.data.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        out.extend_from_slice(self.data);
        if pad {
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_round_trip_and_bounds() {
        let cd = ChannelData {
            channel: ChannelNumber::new(0x4001).unwrap(),
            data: b"hello",
        };
        let wire = cd.encode(true);
        assert_eq!(wire.len(), 12);
        assert_eq!(ChannelData::decode(&wire).unwrap(), cd);
        assert_eq!(ChannelData::decode(&cd.encode(false)).unwrap(), cd);
        assert!(ChannelData::decode(&wire[..7]).is_err());
        assert!(ChannelNumber::new(0x3FFF).is_err());
        assert!(ChannelNumber::new(0x7FFF).is_ok());
        assert!(ChannelNumber::new(0x8000).is_err());
        assert!(ChannelData::decode(&[0x80, 0, 0, 0]).is_err());
    }
}
