//! The recent transit times (arrival − RTP timestamp, in clock ticks) and the
//! two figures the buffer's delay is set from, worked out once per arrival
//! rather than on every playout decision.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct TransitWindow {
    recent: VecDeque<i64>,
    /// `recent`, sorted; kept to reuse its allocation.
    sorted: Vec<i64>,
    min: i64,
    spread: i64,
}

impl TransitWindow {
    /// Records one arrival's transit, keeping the last `window` (at least 1).
    pub(super) fn push(&mut self, transit: i64, window: usize) {
        self.recent.push_back(transit);
        while self.recent.len() > window.max(1) {
            self.recent.pop_front();
        }
        self.sorted.clear();
        self.sorted.extend(self.recent.iter().copied());
        self.sorted.sort_unstable();
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
}
