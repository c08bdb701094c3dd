//! The recent transit times (arrival − RTP timestamp, in clock ticks) and the
//! two figures the buffer's delay is set from, worked out once per arrival
//! rather than on every playout decision (a sorted copy of the window is
//! kept up to date: one insert and one removal per arrival).

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct TransitWindow {
    recent: VecDeque<i64>,
    /// The same values, kept sorted as they come and go.
    sorted: Vec<i64>,
    min: i64,
    spread: i64,
}

impl TransitWindow {
    /// Records one arrival's transit, keeping the last `window` (at least 1).
    pub(super) fn push(&mut self, transit: i64, window: usize) {
        self.recent.push_back(transit);
        let at = self.sorted.partition_point(|&v| v < transit);
        self.sorted.insert(at, transit);
        while self.recent.len() > window.max(1) {
            if let Some(old) = self.recent.pop_front() {
                if let Ok(at) = self.sorted.binary_search(&old) {
                    self.sorted.remove(at);
                }
            }
        }
        let lo = self.sorted.first().copied().unwrap_or(transit);
        let p95 = self
            .sorted
            .get((self.sorted.len() - 1) * 95 / 100)
            .copied()
            .unwrap_or(lo);
        (self.min, self.spread) = (lo, p95 - lo);
    }

    pub(super) fn clear(&mut self) {
        self.recent.clear();
        self.sorted.clear();
        (self.min, self.spread) = (0, 0);
    }

    pub(super) fn len(&self) -> usize {
        self.recent.len()
    }

    /// The fastest recent transit (0 before any arrival).
    pub(super) fn min(&self) -> i64 {
        self.min
    }

    /// 95th percentile minus minimum of the recent transits.
    pub(super) fn spread(&self) -> i64 {
        self.spread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_spread_follow_the_window() {
        let mut w = TransitWindow::default();
        assert_eq!((w.len(), w.min(), w.spread()), (0, 0, 0));
        for t in [100, 140, 120, 900, 110] {
            w.push(t, 4);
        }
        // 100 fell out of the window of 4: 140, 120, 900, 110.
        assert_eq!(w.len(), 4);
        assert_eq!(w.min(), 110);
        // p95 index of 4 sorted = (3 * 95) / 100 = 2 → 140.
        assert_eq!(w.spread(), 30);
        let mut many = TransitWindow::default();
        for t in 0..100 {
            many.push(t, 150);
        }
        // 0..=99 sorted: p95 is at index 94.
        assert_eq!((many.min(), many.spread()), (0, 94));
        many.clear();
        assert_eq!((many.len(), many.min(), many.spread()), (0, 0, 0));
    }

    #[test]
    fn the_kept_order_matches_sorting_the_window_afresh() {
        let mut w = TransitWindow::default();
        let mut x: i64 = 7;
        let mut all = Vec::new();
        for _ in 0..500 {
            x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
            let t = x % 40; // many repeats
            all.push(t);
            w.push(t, 150);
            let mut window: Vec<i64> = all.iter().rev().take(150).copied().collect();
            window.sort_unstable();
            assert_eq!(w.sorted, window);
            let p95 = window[(window.len() - 1) * 95 / 100];
            assert_eq!((w.min(), w.spread()), (window[0], p95 - window[0]));
        }
    }
}
