//! Sender-side adaptation during a call: the far end's RTCP receiver reports
//! (loss, jitter) and the path's round trip feed `natter_media`'s
//! [`RatePolicy`]; what it decides goes to the encoder. Loss turns Opus
//! in-band FEC on (with the loss figure the encoder plans for), congestion
//! steps the bitrate down a rung at a time, and a clean path steps it back up
//! — never above the bitrate the phone was configured with, so a good path
//! costs no more data than before.

use std::time::{Duration, Instant};

use natter_media::codec::{Codec, EncoderSettings};
use natter_media::policy::{PolicyConfig, RatePolicy, Report};

use crate::media_session::TransportStats;
use crate::voice::VoiceTx;

pub(super) struct Adapt {
    policy: RatePolicy,
}

impl Adapt {
    /// For Opus calls (G.711 has nothing to adapt), starting from `settings`.
    pub(super) fn new(codec: Codec, settings: &EncoderSettings) -> Option<Self> {
        if codec != Codec::Opus {
            return None;
        }
        let config = PolicyConfig {
            max_bitrate: settings.bitrate_bps,
            min_bitrate: PolicyConfig::default()
                .min_bitrate
                .min(settings.bitrate_bps),
            // The packet time stays: the far end's jitter buffer and the
            // timer coalescing assume one packet time per call.
            long_frame_ms: settings.frame_ms,
            ..PolicyConfig::default()
        };
        Some(Adapt {
            policy: RatePolicy::new(config, *settings),
        })
    }

    /// One stats event (every second): a new receiver report, if there is
    /// one, may change the encoder's settings.
    pub(super) fn on_stats(&mut self, now: Instant, s: &TransportStats, tx: &mut VoiceTx) {
        let Some(loss) = s.egress_loss else {
            return; // no receiver report yet
        };
        let jitter_ticks = s.egress_jitter_ticks.unwrap_or(0);
        let report = Report {
            loss_fraction: loss,
            rtt: s.rtt.unwrap_or_default(),
            // Only Opus calls adapt: the jitter is in its 48 kHz RTP ticks.
            jitter: Duration::from_secs_f64(
                f64::from(jitter_ticks) / f64::from(Codec::Opus.rtp_clock_rate()),
            ),
        };
        if let Some(new) = self.policy.handle_report(now, &report) {
            match tx.apply(&new) {
                Ok(()) => tracing::debug!(
                    bitrate = new.bitrate_bps,
                    fec = new.fec,
                    expected_loss_pct = new.expected_loss_pct,
                    "encoder adapted to the far end's report"
                ),
                Err(e) => tracing::warn!(error = %e, "encoder refused the rate policy's settings"),
            }
        }
    }
}
