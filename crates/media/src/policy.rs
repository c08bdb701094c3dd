//! Sender-side adaptation: from RTCP-like receiver reports (loss fraction,
//! round-trip time, jitter) choose the Opus bitrate, in-band FEC and its
//! expected-loss figure, and the packet time. Every change has hysteresis, so
//! a report near a threshold does not make the encoder flap.
//!
//! * FEC turns on when smoothed loss reaches `fec_on_loss` and off only after
//!   loss stayed below `fec_off_loss` for `fec_off_hold`.
//! * Congestion steps the bitrate down one rung at most every
//!   `step_down_interval`; a clean path steps it up one rung after
//!   `step_up_after`. At the lowest rung under congestion the packet time grows
//!   to `long_frame_ms` to halve header overhead.
//! * Congestion is high jitter, high RTT, or heavy loss *with* a sign of a
//!   queue (the RTT risen `congestion_rtt_rise` above its floor, or jitter at
//!   half its threshold). Heavy loss on a path whose delay stays flat is
//!   random loss (radio, a lossy link), which a lower bitrate does not cure:
//!   there the bitrate stays and FEC, sized to the loss, does the work (WB-PESQ
//!   at 10–20 % random loss with FEC is ~0.3 better at 24 kb/s than at 12;
//!   `scripts/bench-media`, `rate_loss*`).

use std::time::{Duration, Instant};

use crate::codec::EncoderSettings;

/// Bitrate rungs (bit/s), lowest first.
const LADDER: [u32; 6] = [12_000, 16_000, 20_000, 24_000, 32_000, 40_000];

/// What the far end reported about our stream (RTCP receiver report).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Fraction of packets lost since the last report, 0.0–1.0.
    pub loss_fraction: f32,
    /// Round-trip time.
    pub rtt: Duration,
    /// Interarrival jitter.
    pub jitter: Duration,
}

/// Thresholds; [`Default`] gives the documented values.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Lowest bitrate used. Default 12 000.
    pub min_bitrate: u32,
    /// Highest bitrate used. Default 32 000.
    pub max_bitrate: u32,
    /// Smoothed loss that turns FEC on. Default 2 %.
    pub fec_on_loss: f32,
    /// Smoothed loss below which FEC may turn off. Default 1 %.
    pub fec_off_loss: f32,
    /// How long loss must stay below `fec_off_loss` before FEC turns off. Default 10 s.
    pub fec_off_hold: Duration,
    /// Loss above which the path counts as congested. Default 10 %.
    pub congestion_loss: f32,
    /// Jitter above which the path counts as congested. Default 60 ms.
    pub congestion_jitter: Duration,
    /// RTT above which the path counts as congested. Default 500 ms.
    pub congestion_rtt: Duration,
    /// How far the RTT must rise above its floor for heavy loss to count as
    /// congestion (a queue building up). Default 100 ms.
    pub congestion_rtt_rise: Duration,
    /// Minimum time between two bitrate steps down. Default 2 s.
    pub step_down_interval: Duration,
    /// Clean time needed for one bitrate step up. Default 10 s.
    pub step_up_after: Duration,
    /// Packet time at the lowest rung under congestion. Default 40 ms.
    pub long_frame_ms: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_bitrate: 12_000,
            max_bitrate: 32_000,
            fec_on_loss: 0.02,
            fec_off_loss: 0.01,
            fec_off_hold: Duration::from_secs(10),
            congestion_loss: 0.10,
            congestion_jitter: Duration::from_millis(60),
            congestion_rtt: Duration::from_millis(500),
            congestion_rtt_rise: Duration::from_millis(100),
            step_down_interval: Duration::from_secs(2),
            step_up_after: Duration::from_secs(10),
            long_frame_ms: 40,
        }
    }
}

/// The adaptation state machine.
#[derive(Debug, Clone)]
pub struct RatePolicy {
    config: PolicyConfig,
    settings: EncoderSettings,
    loss: f32,
    /// The lowest RTT reported, creeping up towards the RTT of a new path.
    rtt_floor: Option<Duration>,
    last_down: Option<Instant>,
    clean_since: Option<Instant>,
    quiet_since: Option<Instant>,
}

impl RatePolicy {
    /// Starts from `initial` settings (the bitrate is snapped to the ladder).
    pub fn new(config: PolicyConfig, initial: EncoderSettings) -> Self {
        let mut settings = initial;
        settings.bitrate_bps = snap(settings.bitrate_bps, &config);
        Self {
            config,
            settings,
            loss: 0.0,
            rtt_floor: None,
            last_down: None,
            clean_since: None,
            quiet_since: None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> EncoderSettings {
        self.settings
    }

    /// Smoothed loss fraction.
    pub fn smoothed_loss(&self) -> f32 {
        self.loss
    }

    /// Takes in one report; returns the new settings when they changed.
    pub fn handle_report(&mut self, now: Instant, report: &Report) -> Option<EncoderSettings> {
        let loss = if report.loss_fraction.is_finite() {
            report.loss_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.loss = 0.5 * self.loss + 0.5 * loss;
        self.track_rtt_floor(report.rtt);
        let before = self.settings;
        self.adapt_fec(now);
        self.adapt_rate(now, report);
        (self.settings != before).then_some(self.settings)
    }

    fn adapt_fec(&mut self, now: Instant) {
        let pct = (self.loss * 100.0).ceil().clamp(1.0, 40.0) as u8;
        if self.loss >= self.config.fec_on_loss {
            self.quiet_since = None;
            if !self.settings.fec || pct.abs_diff(self.settings.expected_loss_pct) >= 2 {
                self.settings.fec = true;
                self.settings.expected_loss_pct = pct;
            }
            return;
        }
        if !self.settings.fec {
            return;
        }
        if self.loss >= self.config.fec_off_loss {
            self.quiet_since = None;
            return;
        }
        let since = *self.quiet_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.config.fec_off_hold {
            self.settings.fec = false;
            self.settings.expected_loss_pct = 0;
            self.quiet_since = None;
        }
    }

    /// The floor follows a lower RTT at once and a higher one by 1/64 per
    /// report (about a minute to settle on a new path); zero means unknown.
    fn track_rtt_floor(&mut self, rtt: Duration) {
        if rtt.is_zero() {
            return;
        }
        let floor = self.rtt_floor.get_or_insert(rtt);
        *floor = if rtt < *floor {
            rtt
        } else {
            *floor + (rtt - *floor) / 64
        };
    }

    /// A queue is building: the RTT has risen well above its floor, or the
    /// jitter is high.
    fn queueing(&self, report: &Report) -> bool {
        let c = &self.config;
        let risen = self
            .rtt_floor
            .is_some_and(|f| report.rtt >= f + c.congestion_rtt_rise);
        risen || report.jitter >= c.congestion_jitter / 2
    }

    fn adapt_rate(&mut self, now: Instant, report: &Report) {
        let c = &self.config;
        let congested = (self.loss > c.congestion_loss && self.queueing(report))
            || report.jitter > c.congestion_jitter
            || report.rtt > c.congestion_rtt;
        let clean = self.loss < c.fec_on_loss
            && report.jitter < c.congestion_jitter / 2
            && report.rtt < c.congestion_rtt / 2;
        if congested {
            self.clean_since = None;
            let rested = self
                .last_down
                .is_none_or(|t| now.saturating_duration_since(t) >= c.step_down_interval);
            if rested {
                self.step_down(now);
            }
        } else if clean {
            let since = *self.clean_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= c.step_up_after {
                self.step_up();
                self.clean_since = Some(now);
            }
        } else {
            self.clean_since = None;
        }
    }

    fn step_down(&mut self, now: Instant) {
        let lower = LADDER
            .iter()
            .rev()
            .copied()
            .find(|&r| r < self.settings.bitrate_bps && r >= self.config.min_bitrate);
        match lower {
            Some(rate) => self.settings.bitrate_bps = rate,
            None => self.settings.frame_ms = self.config.long_frame_ms,
        }
        self.last_down = Some(now);
    }

    fn step_up(&mut self) {
        if self.settings.frame_ms != 20 {
            self.settings.frame_ms = 20;
            return;
        }
        let higher = LADDER
            .iter()
            .copied()
            .find(|&r| r > self.settings.bitrate_bps && r <= self.config.max_bitrate);
        if let Some(rate) = higher {
            self.settings.bitrate_bps = rate;
        }
    }
}

fn snap(bitrate: u32, config: &PolicyConfig) -> u32 {
    LADDER
        .iter()
        .copied()
        .filter(|&r| r >= config.min_bitrate && r <= config.max_bitrate)
        .min_by_key(|&r| r.abs_diff(bitrate))
        .unwrap_or(bitrate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy with the default configuration and encoder settings.
    fn policy() -> RatePolicy {
        RatePolicy::new(PolicyConfig::default(), EncoderSettings::default())
    }

    fn report(loss: f32, rtt_ms: u64, jitter_ms: u64) -> Report {
        Report {
            loss_fraction: loss,
            rtt: Duration::from_millis(rtt_ms),
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    /// Feeds one report per second for `secs`, returning the settings after each.
    fn feed(p: &mut RatePolicy, t: &mut Instant, secs: u32, r: Report) -> Vec<EncoderSettings> {
        (0..secs)
            .map(|_| {
                *t += Duration::from_secs(1);
                p.handle_report(*t, &r);
                p.settings()
            })
            .collect()
    }

    #[test]
    fn clean_path_climbs_to_the_ceiling_without_fec() {
        let mut p = policy();
        let mut t = Instant::now();
        let seen = feed(&mut p, &mut t, 30, report(0.0, 40, 5));
        // 24 kb/s steps up once per 10 clean seconds, to the 32 kb/s ceiling, and no further.
        assert_eq!(seen[8].bitrate_bps, 24_000);
        assert_eq!(seen[29].bitrate_bps, 32_000);
        assert!(seen.iter().all(|s| !s.fec && s.frame_ms == 20));
    }

    #[test]
    fn moderate_loss_turns_fec_on_and_it_stays_on_for_the_hold_time() {
        let mut p = policy();
        let mut t = Instant::now();
        let lossy = feed(&mut p, &mut t, 5, report(0.05, 40, 5));
        assert!(
            lossy[0].fec,
            "FEC on at the first 5 % report (smoothed 2.5 %)"
        );
        assert_eq!(lossy[4].expected_loss_pct, 5);
        assert_eq!(lossy[4].bitrate_bps, 24_000, "5 % loss is not congestion");
        let calm = feed(&mut p, &mut t, 20, report(0.0, 40, 5));
        let on_for = calm.iter().take_while(|s| s.fec).count();
        // Smoothed loss falls below 1 % after 3 reports, then 10 s of hold.
        assert!((12..=14).contains(&on_for), "FEC stayed on {on_for} s");
        assert_eq!(calm[19].expected_loss_pct, 0);
    }

    #[test]
    fn loss_near_the_threshold_does_not_flap() {
        let mut p = policy();
        let mut t = Instant::now();
        let mut changes = 0;
        for i in 0..60 {
            t += Duration::from_secs(1);
            let loss = if i % 2 == 0 { 0.025 } else { 0.012 };
            changes += usize::from(p.handle_report(t, &report(loss, 40, 5)).is_some());
        }
        assert!(p.settings().fec);
        assert!(changes <= 3, "{changes} changes in 60 s of 1.2–2.5 % loss");
    }

    #[test]
    fn congestion_steps_down_then_lengthens_packets_then_recovers() {
        let mut p = policy();
        let mut t = Instant::now();
        feed(&mut p, &mut t, 1, report(0.0, 80, 5));
        // Loss with the RTT risen 220 ms above its floor: a queue overflows.
        let bad = feed(&mut p, &mut t, 12, report(0.2, 300, 20));
        let rates: Vec<u32> = bad.iter().map(|s| s.bitrate_bps).collect();
        // One rung per 2 s: 24k → 20k → 16k → 12k, then 40 ms packets.
        assert_eq!(
            rates[0], 24_000,
            "the smoothed loss crosses 10 % on the 2nd report"
        );
        assert_eq!(rates[1], 20_000);
        assert_eq!(rates[3], 16_000);
        assert_eq!(rates[5], 12_000);
        assert_eq!(bad[6].frame_ms, 20);
        assert_eq!(bad[7].frame_ms, 40);
        assert!(bad[11].fec && bad[11].expected_loss_pct >= 19);
        let good = feed(&mut p, &mut t, 60, report(0.0, 40, 5));
        assert_eq!(good[20].frame_ms, 20, "packets shorten first");
        assert!(
            good[59].bitrate_bps >= 24_000,
            "climbed back to {}",
            good[59].bitrate_bps
        );
        assert!(!good[59].fec);
    }

    #[test]
    fn random_loss_on_a_flat_delay_keeps_the_bitrate_and_sizes_fec_to_it() {
        let mut p = policy();
        let mut t = Instant::now();
        feed(&mut p, &mut t, 3, report(0.0, 80, 5));
        let lossy = feed(&mut p, &mut t, 12, report(0.2, 85, 10));
        assert!(lossy
            .iter()
            .all(|s| s.bitrate_bps == 24_000 && s.frame_ms == 20));
        assert!(lossy[11].fec && lossy[11].expected_loss_pct >= 19);
        // Unknown RTT (zero) and low jitter: no sign of a queue either.
        let mut q = policy();
        let unknown = feed(&mut q, &mut t, 12, report(0.3, 0, 5));
        assert!(unknown.iter().all(|s| s.bitrate_bps == 24_000));
        // The same loss once the RTT climbs 150 ms: congestion after all.
        let queued = feed(&mut p, &mut t, 3, report(0.2, 235, 10));
        assert!(queued[2].bitrate_bps < 24_000, "{queued:?}");
    }

    #[test]
    fn the_rtt_floor_follows_a_new_path_slowly() {
        let mut p = policy();
        let mut t = Instant::now();
        feed(&mut p, &mut t, 1, report(0.0, 40, 5));
        // A move to a path with 200 ms more RTT, no loss: the floor creeps up.
        feed(&mut p, &mut t, 120, report(0.0, 240, 5));
        // 240 − 200·(63/64)^120 ≈ 210 ms.
        let floor = p.rtt_floor.expect("known");
        assert!(floor > Duration::from_millis(200), "{floor:?}");
        // Now loss at that RTT is random loss, not a queue.
        let before = p.settings().bitrate_bps;
        let lossy = feed(&mut p, &mut t, 6, report(0.2, 240, 5));
        assert!(lossy.iter().all(|s| s.bitrate_bps == before), "{lossy:?}");
    }

    #[test]
    fn high_rtt_or_jitter_alone_counts_as_congestion_and_nan_is_ignored() {
        let mut p = policy();
        let t = Instant::now();
        assert_eq!(
            p.handle_report(t, &report(0.0, 800, 5))
                .map(|s| s.bitrate_bps),
            Some(20_000)
        );
        let mut q = policy();
        assert!(q.handle_report(t, &report(f32::NAN, 40, 5)).is_none());
        assert!(q.handle_report(t, &report(0.0, 40, 100)).is_some());
    }
}
