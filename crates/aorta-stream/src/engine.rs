//! The keyed event-time engine.

use std::hash::Hash;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Micros, StreamError};

/// The one operator trait: per-key state, an event handler and a watermark
/// handler. Operators never see other keys, clocks or I/O.
pub trait KeyedOperator {
    /// Input event type.
    type Event;
    /// Output type.
    type Output;
    /// Per-key state; checkpointed with serde.
    type State: Default + Serialize + DeserializeOwned;
    /// Handles an on-time event at `t`.
    fn on_event(&self, state: &mut Self::State, t: Micros, ev: &Self::Event);
    /// The key's watermark advanced to `wm`: every event still to come has
    /// `t ≥ wm`. Emit `(start, end, value)` for whatever is now complete.
    fn on_watermark(
        &self,
        state: &mut Self::State,
        wm: Micros,
        emit: &mut dyn FnMut(Micros, Micros, Self::Output),
    );
    /// True when `state` holds nothing, so the key may be evicted.
    fn is_empty(&self, state: &Self::State) -> bool;
}

/// A result: key, the interval it covers, and the value. `(key, start, end)`
/// is its identity: recomputation after a crash yields the same identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output<K, O> {
    /// The key (device or patient).
    pub key: K,
    /// Interval start (µs).
    pub start: Micros,
    /// Interval end (µs, exclusive).
    pub end: Micros,
    /// The value.
    pub value: O,
}

/// Lets `op` emit whatever `key`'s watermark `wm` completes, into `out`.
fn fire<K: Clone, Op: KeyedOperator>(
    op: &Op,
    key: &K,
    state: &mut Op::State,
    wm: Micros,
    out: &mut Vec<Output<K, Op::Output>>,
) {
    op.on_watermark(state, wm, &mut |start, end, value| {
        out.push(Output {
            key: key.clone(),
            start,
            end,
            value,
        })
    });
}

/// Engine parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// How far behind a key's newest event time an event may arrive and
    /// still be processed (µs). A key's watermark is its largest event time
    /// minus this bound.
    pub out_of_orderness: Micros,
    /// Evict a key's state once it is empty after a watermark advance.
    pub evict_idle: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            out_of_orderness: 0,
            evict_idle: true,
        }
    }
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Events processed.
    pub events: u64,
    /// Events dropped because they arrived behind their key's watermark.
    pub late_dropped: u64,
    /// Results emitted.
    pub outputs: u64,
    /// Keys evicted after going idle.
    pub evicted: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
struct KeyState<S> {
    state: S,
    max_t: Micros,
    wm: Micros,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize, S: Serialize",
    deserialize = "K: DeserializeOwned, S: DeserializeOwned"
))]
struct Snapshot<K, S> {
    version: u32,
    stats: EngineStats,
    keys: Vec<(K, KeyState<S>)>,
}

const SNAPSHOT_VERSION: u32 = 1;

/// Keyed event-time engine over one [`KeyedOperator`].
///
/// **Late-data policy**: each key has its own watermark (largest event time
/// seen for that key minus [`EngineConfig::out_of_orderness`]) because
/// devices are independent clocks — a device that was offline and uploads
/// its backlog must not hold back, or be dropped by, the others. An event
/// older than its key's watermark is dropped and counted in
/// [`EngineStats::late_dropped`]; everything else is processed.
pub struct Engine<K, Op: KeyedOperator> {
    op: Op,
    cfg: EngineConfig,
    /// Per-key state. FxHash: keys are device/patient ids, not attacker-chosen
    /// strings, and the hash is on the per-event path.
    keys: FxHashMap<K, KeyState<Op::State>>,
    stats: EngineStats,
}

impl<K, Op> Engine<K, Op>
where
    K: Hash + Eq + Clone + Serialize + DeserializeOwned,
    Op: KeyedOperator,
{
    /// A new engine.
    pub fn new(op: Op, cfg: EngineConfig) -> Self {
        Engine {
            op,
            cfg,
            keys: FxHashMap::default(),
            stats: EngineStats::default(),
        }
    }

    /// The operator.
    pub fn operator(&self) -> &Op {
        &self.op
    }

    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Keys with live state.
    pub fn live_keys(&self) -> usize {
        self.keys.len()
    }

    /// Processes one event, appending any results it completes to `out`.
    #[inline]
    pub fn push(&mut self, key: K, t: Micros, ev: Op::Event, out: &mut Vec<Output<K, Op::Output>>) {
        let ks = self.keys.entry(key.clone()).or_insert_with(|| KeyState {
            state: Op::State::default(),
            max_t: Micros::MIN,
            wm: Micros::MIN,
        });
        if t < ks.wm {
            self.stats.late_dropped += 1;
            return;
        }
        self.stats.events += 1;
        self.op.on_event(&mut ks.state, t, &ev);
        if t > ks.max_t {
            ks.max_t = t;
            let wm = t.saturating_sub(self.cfg.out_of_orderness);
            if wm > ks.wm {
                ks.wm = wm;
                let before = out.len();
                fire(&self.op, &key, &mut ks.state, wm, out);
                self.stats.outputs += (out.len() - before) as u64;
            }
        }
    }

    /// Drops every piece of state kept for `key` (its open windows, buffered
    /// samples, watermark), as if it had never been seen; true if there
    /// was any. Used to erase one patient (`docs/erasure.md`).
    pub fn forget(&mut self, key: &K) -> bool {
        self.keys.remove(key).is_some()
    }

    /// Advances every key's watermark to at least `wm` (e.g. from processing
    /// time, for devices that went silent), evicting idle keys.
    pub fn advance_all(&mut self, wm: Micros, out: &mut Vec<Output<K, Op::Output>>) {
        let op = &self.op;
        let before = out.len();
        for (key, ks) in self.keys.iter_mut() {
            if wm > ks.wm {
                ks.wm = wm;
                fire(op, key, &mut ks.state, wm, out);
            }
        }
        self.stats.outputs += (out.len() - before) as u64;
        if self.cfg.evict_idle {
            let n = self.keys.len();
            self.keys.retain(|_, ks| !op.is_empty(&ks.state));
            self.stats.evicted += (n - self.keys.len()) as u64;
        }
    }

    /// End of input: fires every open window.
    pub fn finish(&mut self, out: &mut Vec<Output<K, Op::Output>>) {
        self.advance_all(Micros::MAX, out);
    }

    /// Serialises all operator state, watermarks and counters.
    pub fn snapshot(&self) -> Result<Vec<u8>, StreamError> {
        #[derive(Serialize)]
        struct SnapshotRef<'a, K, S> {
            version: u32,
            stats: EngineStats,
            keys: Vec<(&'a K, &'a KeyState<S>)>,
        }
        let snap = SnapshotRef {
            version: SNAPSHOT_VERSION,
            stats: self.stats,
            keys: self.keys.iter().collect(),
        };
        serde_json::to_vec(&snap)
            .map_err(|e| StreamError::Internal(format!("cannot serialise state: {e}")))
    }

    /// Replaces all state with a snapshot taken by [`Engine::snapshot`].
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let snap: Snapshot<K, Op::State> =
            serde_json::from_slice(bytes).map_err(|e| StreamError::Corrupt {
                path: "<snapshot>".into(),
                offset: e.column() as u64,
                what: e.to_string(),
            })?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(StreamError::Corrupt {
                path: "<snapshot>".into(),
                offset: 0,
                what: format!(
                    "unknown snapshot version {} (this build reads {SNAPSHOT_VERSION})",
                    snap.version
                ),
            });
        }
        self.stats = snap.stats;
        self.keys = snap.keys.into_iter().collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{Aggregator, WindowAggregate, WindowSpec};

    struct Sum;
    impl Aggregator for Sum {
        type In = i64;
        type Acc = (u32, i64);
        type Out = (u32, i64);
        fn add(&self, acc: &mut (u32, i64), _t: Micros, ev: &i64) {
            acc.0 += 1;
            acc.1 += ev;
        }
        fn finish(&self, acc: (u32, i64), _s: Micros, _e: Micros) -> Option<(u32, i64)> {
            Some(acc)
        }
    }

    fn engine(ooo: Micros) -> Engine<u32, WindowAggregate<Sum>> {
        Engine::new(
            WindowAggregate::new(Sum, WindowSpec::tumbling(100).unwrap()),
            EngineConfig {
                out_of_orderness: ooo,
                evict_idle: true,
            },
        )
    }

    #[test]
    fn late_events_within_bound_are_kept_beyond_dropped() {
        let mut e = engine(30);
        let mut out = Vec::new();
        for (t, v) in [(10, 1), (120, 2), (95, 3), (130, 4), (50, 5), (260, 6)] {
            e.push(1, t, v, &mut out);
        }
        // 95 arrives after 120 but within 30 µs: kept. 50 arrives after the
        // watermark passed 100 (130 − 30): dropped and counted.
        assert_eq!(e.stats().late_dropped, 1);
        assert_eq!(
            out.iter().map(|o| (o.start, o.value)).collect::<Vec<_>>(),
            vec![(0, (2, 4)), (100, (2, 6))]
        );
        e.finish(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(e.live_keys(), 0, "idle keys evicted");
    }

    proptest::proptest! {
        /// Events arriving out of order within the bound land in the right
        /// windows (tumbling and sliding), exactly as a sorted batch computes them.
        #[test]
        fn bounded_disorder_equals_sorted_batch(
            jitter in proptest::collection::vec(0i64..30, 1..300),
            sliding in proptest::prelude::any::<bool>(),
        ) {
            let spec = if sliding { WindowSpec::sliding(100, 40).unwrap() } else { WindowSpec::tumbling(100).unwrap() };
            let mut e = Engine::new(WindowAggregate::new(Sum, spec), EngineConfig { out_of_orderness: 30, evict_idle: true });
            let mut out = Vec::new();
            // Event i happens at 10·i but arrives with up to 30 µs of delay.
            let mut arrivals: Vec<(i64, i64)> = jitter.iter().enumerate().map(|(i, j)| (10 * i as i64 + j, 10 * i as i64)).collect();
            arrivals.sort();
            for &(_, t) in &arrivals {
                e.push(1u32, t, t, &mut out);
            }
            e.finish(&mut out);
            proptest::prop_assert_eq!(e.stats().late_dropped, 0);
            let mut expect: std::collections::BTreeMap<i64, (u32, i64)> = std::collections::BTreeMap::new();
            for &(_, t) in &arrivals {
                spec.assign(t, |s| {
                    let a = expect.entry(s).or_default();
                    a.0 += 1;
                    a.1 += t;
                });
            }
            let got: Vec<(i64, (u32, i64))> = out.iter().map(|o| (o.start, o.value)).collect();
            proptest::prop_assert_eq!(got, expect.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn keys_have_independent_watermarks() {
        let mut e = engine(0);
        let mut out = Vec::new();
        e.push(1, 1_000, 1, &mut out);
        // Key 2 is far behind key 1 (a device uploading a backlog): not late.
        e.push(2, 5, 7, &mut out);
        e.push(2, 150, 1, &mut out);
        assert_eq!(e.stats().late_dropped, 0);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].key, out[0].value), (2, (1, 7)));
    }

    #[test]
    fn snapshot_restore_continues_identically() {
        let events: Vec<(u32, Micros, i64)> =
            (0..400).map(|i| ((i % 3) as u32, (i / 3) * 7, i)).collect();
        let mut full = engine(5);
        let mut expect = Vec::new();
        for &(k, t, v) in &events {
            full.push(k, t, v, &mut expect);
        }
        full.finish(&mut expect);
        let key = |o: &Output<u32, (u32, i64)>| (o.key, o.start);
        expect.sort_by_key(key);
        for cut in [0, 1, 150, 399] {
            let mut a = engine(5);
            let mut got = Vec::new();
            for &(k, t, v) in &events[..cut] {
                a.push(k, t, v, &mut got);
            }
            let snap = a.snapshot().unwrap();
            let mut b = engine(5);
            b.restore(&snap).unwrap();
            for &(k, t, v) in &events[cut..] {
                b.push(k, t, v, &mut got);
            }
            b.finish(&mut got);
            got.sort_by_key(key);
            assert_eq!(got, expect, "cut at {cut}");
        }
        let mut c = engine(5);
        assert!(
            c.restore(b"{\"version\":9,\"stats\":{},\"keys\":[]}")
                .is_err()
        );
        assert!(c.restore(b"garbage").is_err());
    }
}
