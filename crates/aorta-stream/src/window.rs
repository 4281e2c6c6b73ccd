//! Event-time windows: tumbling and sliding assignment, and
//! [`WindowAggregate`], which turns an [`Aggregator`] into a
//! [`KeyedOperator`].
//!
//! A window `[start, end)` of a key fires once that key's watermark reaches
//! `end`; its accumulator is then dropped (the state's eviction rule), so a
//! key holds at most `⌈size / slide⌉ + 1` open windows once it is caught up.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{KeyedOperator, Micros, StreamError};

/// How events are grouped into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowSpec {
    /// Back-to-back windows of `size` µs, aligned to the epoch.
    Tumbling {
        /// Window length (µs).
        size: Micros,
    },
    /// Windows of `size` µs starting every `slide` µs.
    Sliding {
        /// Window length (µs).
        size: Micros,
        /// Distance between window starts (µs).
        slide: Micros,
    },
}

impl WindowSpec {
    /// Tumbling windows of `size` µs (> 0).
    pub fn tumbling(size: Micros) -> Result<WindowSpec, StreamError> {
        if size <= 0 {
            return Err(StreamError::Config(format!(
                "window size must be > 0 µs, got {size}"
            )));
        }
        Ok(WindowSpec::Tumbling { size })
    }

    /// Sliding windows of `size` µs every `slide` µs (0 < slide ≤ size, at most 1000 windows per event).
    pub fn sliding(size: Micros, slide: Micros) -> Result<WindowSpec, StreamError> {
        if size <= 0 || slide <= 0 || slide > size || size / slide > 1000 {
            return Err(StreamError::Config(format!(
                "bad sliding window: size {size} µs, slide {slide} µs"
            )));
        }
        Ok(WindowSpec::Sliding { size, slide })
    }

    /// Window length in µs.
    pub fn size(&self) -> Micros {
        match *self {
            WindowSpec::Tumbling { size } | WindowSpec::Sliding { size, .. } => size,
        }
    }

    /// Calls `f(start)` for every window containing `t`, earliest first.
    #[inline]
    pub fn assign(&self, t: Micros, mut f: impl FnMut(Micros)) {
        match *self {
            WindowSpec::Tumbling { size } => f(t.div_euclid(size) * size),
            WindowSpec::Sliding { size, slide } => {
                let last = t.div_euclid(slide) * slide;
                let mut s = last - (size - 1).div_euclid(slide) * slide;
                while s <= last {
                    if t < s + size {
                        f(s);
                    }
                    s += slide;
                }
            }
        }
    }
}

/// A per-window fold: the logic of a windowed operator.
pub trait Aggregator {
    /// Event type.
    type In;
    /// Per-window accumulator.
    type Acc: Default + Serialize + DeserializeOwned;
    /// Result of a window.
    type Out;
    /// Adds an event at time `t` to a window's accumulator.
    fn add(&self, acc: &mut Self::Acc, t: Micros, ev: &Self::In);
    /// Finishes a window `[start, end)`; `None` emits nothing (e.g. too few events).
    fn finish(&self, acc: Self::Acc, start: Micros, end: Micros) -> Option<Self::Out>;
}

/// Open windows of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "A: Serialize", deserialize = "A: DeserializeOwned"))]
pub struct WindowState<A> {
    /// Open windows sorted by start (in-order input only ever appends).
    open: VecDeque<(Micros, A)>,
}

impl<A> Default for WindowState<A> {
    fn default() -> Self {
        WindowState {
            open: VecDeque::new(),
        }
    }
}

impl<A> WindowState<A> {
    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }
}

/// An [`Aggregator`] over event-time windows, as a [`KeyedOperator`].
#[derive(Debug, Clone)]
pub struct WindowAggregate<G> {
    agg: G,
    spec: WindowSpec,
}

impl<G: Aggregator> WindowAggregate<G> {
    /// Windows `agg` by `spec`.
    pub fn new(agg: G, spec: WindowSpec) -> Self {
        WindowAggregate { agg, spec }
    }

    /// The window specification.
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }
}

impl<G: Aggregator> KeyedOperator for WindowAggregate<G> {
    type Event = G::In;
    type Output = G::Out;
    type State = WindowState<G::Acc>;

    #[inline]
    fn on_event(&self, state: &mut Self::State, t: Micros, ev: &Self::Event) {
        self.spec.assign(t, |start| {
            // Fast path: the newest window is the usual target, or a new one
            // after it; out-of-order events search the (few) open windows.
            match state.open.back_mut() {
                Some((s, acc)) if *s == start => self.agg.add(acc, t, ev),
                Some((s, _)) if *s > start => {
                    let i = state.open.partition_point(|(s, _)| *s < start);
                    match state.open.get_mut(i) {
                        Some((s, acc)) if *s == start => self.agg.add(acc, t, ev),
                        _ => {
                            let mut acc = G::Acc::default();
                            self.agg.add(&mut acc, t, ev);
                            state.open.insert(i, (start, acc));
                        }
                    }
                }
                _ => {
                    let mut acc = G::Acc::default();
                    self.agg.add(&mut acc, t, ev);
                    state.open.push_back((start, acc));
                }
            }
        });
    }

    fn on_watermark(
        &self,
        state: &mut Self::State,
        wm: Micros,
        emit: &mut dyn FnMut(Micros, Micros, Self::Output),
    ) {
        let size = self.spec.size();
        while let Some((start, _)) = state.open.front() {
            let (start, end) = (*start, start.saturating_add(size));
            if end > wm {
                break;
            }
            let Some((_, acc)) = state.open.pop_front() else {
                break;
            };
            if let Some(out) = self.agg.finish(acc, start, end) {
                emit(start, end, out);
            }
        }
    }

    fn is_empty(&self, state: &Self::State) -> bool {
        state.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(spec: WindowSpec, t: Micros) -> Vec<Micros> {
        let mut v = Vec::new();
        spec.assign(t, |s| v.push(s));
        v
    }

    #[test]
    fn assignment() {
        let tum = WindowSpec::tumbling(10).unwrap();
        assert_eq!(windows(tum, 0), vec![0]);
        assert_eq!(windows(tum, 19), vec![10]);
        assert_eq!(windows(tum, -1), vec![-10]);
        let sl = WindowSpec::sliding(10, 5).unwrap();
        assert_eq!(windows(sl, 7), vec![0, 5]);
        assert_eq!(windows(sl, 10), vec![5, 10]);
        let sl = WindowSpec::sliding(10, 3).unwrap();
        assert_eq!(windows(sl, 10), vec![3, 6, 9]);
        for t in -50..50 {
            for s in windows(sl, t) {
                assert!(s <= t && t < s + 10 && s % 3 == 0);
            }
        }
        assert!(WindowSpec::tumbling(0).is_err());
        assert!(WindowSpec::sliding(10, 11).is_err());
        assert!(WindowSpec::sliding(1_000_000, 1).is_err());
    }
}
