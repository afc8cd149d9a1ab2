//! The window operator.
//!
//! State it keeps, per key:
//! - *contents*: one accumulator per pane (aligned windows; a pane is
//!   `gcd(size, slide)` long, so a record is added once whatever the overlap),
//!   per session (session windows), or per key (global window). A window's
//!   result merges the accumulators of its panes;
//! - *sessions*: the key's open sessions (session windows only);
//! - *counts*: records per window (count triggers only);
//! - timers: `Fire` at a window's end, `Early` for continuous triggers,
//!   `CleanupPane` / `CleanupWindow` at `end - 1 + allowed lateness`.
//!
//! Everything is dropped by the cleanup timers, so once the watermark has
//! passed every window's cleanup time no state and no timer remains. Records
//! whose windows are all past cleanup are late: they go to the late side
//! output if one is set, and are always counted (`late_records_dropped`).

use std::marker::PhantomData;
use std::sync::Arc;

use eddy_engine::clock::Clock;
use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Key, Record, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::keygroup::KeyGroup;
use eddy_engine::operator::{Collector, Operator, OutputTag};
use eddy_engine::process::{KeySelector, TimeDomain};
use eddy_engine::state::{AggregateFunction, KeyedCore, StateTable};
use serde::{Deserialize, Serialize};

use crate::window::assigner::{pane_start, Scheme, SessionGap, WindowSpec};
use crate::window::function::{ProcessWindowFunction, WindowContext};
use crate::window::time::TimeWindow;
use crate::window::trigger::Trigger;

/// Aligned windows: per key, the pane accumulators by pane start.
const PANES: &str = "window-panes";
/// Sessions and the global window: an accumulator per state window.
const CONTENTS: &str = "window-contents";
const COUNTS: &str = "window-counts";
const SESSIONS: &str = "window-sessions";

/// An open session and the window its accumulator is stored under (which
/// stays put as the session grows, so merging does not move state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    window: TimeWindow,
    state: TimeWindow,
}

/// The pane accumulators of one key, by pane start.
type Panes<Acc> = std::collections::BTreeMap<i64, Acc>;

/// What a window timer does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum TimerKind {
    /// The window's end: fire.
    Fire(TimeWindow),
    /// An early firing of a continuous trigger.
    Early(TimeWindow),
    /// Drop a pane's (or session's, or the global window's) contents.
    CleanupPane(TimeWindow),
    /// Drop a window's count and let the function clear its state.
    CleanupWindow(TimeWindow),
}

impl TimerKind {
    /// Firings before cleanups when both are due at the same time.
    fn is_firing(&self) -> bool {
        matches!(self, TimerKind::Fire(_) | TimerKind::Early(_))
    }
}

/// Settings of a window operator, shared by its subtasks.
pub(crate) struct WindowSettings<T> {
    pub spec: WindowSpec<T>,
    pub trigger: Trigger,
    pub lateness_ms: i64,
    pub late_tag: Option<OutputTag<T>>,
}

impl<T> Clone for WindowSettings<T> {
    fn clone(&self) -> Self {
        WindowSettings {
            spec: self.spec.clone(),
            trigger: self.trigger.clone(),
            lateness_ms: self.lateness_ms,
            late_tag: self.late_tag,
        }
    }
}

/// The window operator for one subtask.
pub(crate) struct WindowOperator<K, T, A, F, O> {
    settings: WindowSettings<T>,
    base: Trigger,
    purge: bool,
    agg: A,
    func: F,
    key: KeySelector<T, K>,
    core: KeyedCore<K, TimerKind>,
    clock: Arc<dyn Clock>,
    _o: PhantomData<fn() -> O>,
}

/// The current key of a call.
struct Scope<'a, K> {
    key: &'a K,
    kg: KeyGroup,
}

impl<K, T, A, F, O> WindowOperator<K, T, A, F, O>
where
    K: Key,
    T: Data,
    A: AggregateFunction<In = T>,
    F: ProcessWindowFunction<K, A::Out, O>,
    O: Data,
{
    pub(crate) fn new(
        settings: WindowSettings<T>,
        agg: A,
        func: F,
        key: KeySelector<T, K>,
        ctx: &RuntimeContext,
    ) -> Self {
        let (base, purge) = settings.trigger.unwrap_purging();
        let base = base.clone();
        WindowOperator {
            settings,
            base,
            purge,
            agg,
            func,
            key,
            core: KeyedCore::new(ctx),
            clock: Arc::clone(ctx.clock()),
            _o: PhantomData,
        }
    }

    fn event_time(&self) -> bool {
        self.settings.spec.domain == TimeDomain::EventTime
    }

    /// The domain the trigger's firing timers live in.
    fn trigger_domain(&self) -> TimeDomain {
        match self.base {
            Trigger::ProcessingTime | Trigger::ContinuousProcessingTime(_) => {
                TimeDomain::ProcessingTime
            }
            _ => TimeDomain::EventTime,
        }
    }

    fn now_in(&self, domain: TimeDomain) -> Timestamp {
        match domain {
            TimeDomain::EventTime => self.core.timers.watermark(),
            TimeDomain::ProcessingTime => self.clock.now(),
        }
    }

    fn early_interval(&self) -> Option<i64> {
        match &self.base {
            Trigger::ContinuousEventTime(d) | Trigger::ContinuousProcessingTime(d) => {
                Some((d.as_millis() as i64).max(1))
            }
            _ => None,
        }
    }

    /// When a window's state goes: end - 1 + lateness (event time), end - 1
    /// (processing time).
    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        if self.event_time() {
            w.max_timestamp().add_millis(self.settings.lateness_ms)
        } else {
            w.max_timestamp()
        }
    }

    /// True when every firing and the cleanup of `w` are behind us.
    fn is_late(&self, w: &TimeWindow) -> bool {
        self.event_time() && self.cleanup_time(w) <= self.core.timers.watermark()
    }

    fn register(&mut self, domain: TimeDomain, at: Timestamp, key: &K, kind: TimerKind) {
        let queue = match domain {
            TimeDomain::EventTime => &mut self.core.timers.event,
            TimeDomain::ProcessingTime => &mut self.core.timers.processing,
        };
        queue.register(at, key.clone(), kind);
    }

    fn register_fire(&mut self, key: &K, w: TimeWindow) {
        let domain = self.trigger_domain();
        self.register(domain, w.max_timestamp(), key, TimerKind::Fire(w));
    }

    fn register_early(&mut self, key: &K, w: TimeWindow, after: Timestamp) {
        if let Some(interval) = self.early_interval() {
            let next = Timestamp((after.millis().div_euclid(interval) + 1) * interval);
            if next < w.max_timestamp() {
                let domain = self.trigger_domain();
                self.register(domain, next, key, TimerKind::Early(w));
            }
        }
    }

    fn register_cleanup(&mut self, key: &K, kind: TimerKind, w: &TimeWindow) {
        let domain = self.settings.spec.domain;
        let at = self.cleanup_time(w);
        self.register(domain, at, key, kind);
    }

    fn contents(
        &mut self,
    ) -> Result<&mut StateTable<K, TimeWindow, A::Acc>, eddy_engine::error::StateError> {
        self.core.backend.table::<TimeWindow, A::Acc>(CONTENTS)
    }

    fn on_late(&mut self, record: Record<T>, out: &mut Collector<'_, O>) {
        match self.settings.late_tag {
            Some(tag) => {
                out.set_timestamp(record.ts);
                out.output(&tag, record.value);
            }
            None => self.core.late_dropped += 1,
        }
    }

    /// The merged contents of `w` (aligned: its panes), if any.
    /// The merged contents of `w`, if any.
    /// The merged contents of `w`, if any; for aligned windows also the
    /// start of the first pane of the next window on (`w.start + slide`),
    /// found in the same lookup.
    fn window_contents(
        &mut self,
        s: &Scope<'_, K>,
        w: &TimeWindow,
    ) -> UserResult<(Option<A::Acc>, Option<i64>)> {
        match &self.settings.spec.scheme {
            Scheme::Aligned { slide, .. } => {
                let next_start = w.start.millis() + slide;
                let agg = &self.agg;
                let panes = self.core.backend.table::<(), Panes<A::Acc>>(PANES)?;
                let Some(map) = panes.get(s.kg, s.key, &())? else {
                    return Ok((None, None));
                };
                let mut merged: Option<A::Acc> = None;
                for acc in map.range(w.start.millis()..w.end.millis()).map(|(_, a)| a) {
                    match merged.as_mut() {
                        None => merged = Some(acc.clone()),
                        Some(m) => agg.merge(m, acc.clone()),
                    }
                }
                let next = map.range(next_start..).next().map(|(start, _)| *start);
                Ok((merged, next))
            }
            Scheme::Session(_) => {
                let Some(session) = self.session(s, w)? else {
                    return Ok((None, None));
                };
                Ok((
                    self.contents()?.get(s.kg, s.key, &session.state)?.cloned(),
                    None,
                ))
            }
            Scheme::Global => Ok((self.contents()?.get(s.kg, s.key, w)?.cloned(), None)),
        }
    }

    /// Emits `w`'s result; purges its contents when the trigger purges.
    /// Emits `w`'s result; purges its contents when the trigger purges.
    /// Returns the start of the next pane on, for aligned windows (see
    /// `window_contents`).
    fn fire(
        &mut self,
        s: &Scope<'_, K>,
        w: TimeWindow,
        out: &mut Collector<'_, O>,
    ) -> UserResult<Option<i64>> {
        let (contents, next) = self.window_contents(s, &w)?;
        let Some(acc) = contents else {
            return Ok(next);
        };
        let result = self.agg.result(&acc);
        out.set_timestamp(w.max_timestamp());
        let mut ctx = WindowContext {
            window: w,
            key: s.key,
            key_group: s.kg,
            watermark: self.core.timers.watermark(),
            clock: self.clock.as_ref(),
            backend: &mut self.core.backend,
        };
        self.func.process(s.key, result, &mut ctx, out)?;
        if self.func.keeps_window_state() {
            self.register_cleanup(s.key, TimerKind::CleanupWindow(w), &w);
        }
        if self.purge {
            self.purge_window(s, &w)?;
        }
        Ok(next)
    }

    fn purge_window(&mut self, s: &Scope<'_, K>, w: &TimeWindow) -> UserResult {
        match &self.settings.spec.scheme {
            Scheme::Aligned { .. } => {
                let panes = self.core.backend.table::<(), Panes<A::Acc>>(PANES)?;
                if let Some(map) = panes.get_mut(s.kg, s.key, &())? {
                    let keep = map.split_off(&w.end.millis());
                    map.retain(|start, _| *start < w.start.millis());
                    map.extend(keep);
                    if map.is_empty() {
                        panes.remove(s.kg, s.key, &())?;
                    }
                }
            }
            Scheme::Session(_) => {
                if let Some(session) = self.session(s, w)? {
                    self.contents()?.remove(s.kg, s.key, &session.state)?;
                }
            }
            Scheme::Global => {
                self.contents()?.remove(s.kg, s.key, w)?;
            }
        }
        Ok(())
    }

    /// Count triggers: counts `w`, firing every `n` records.
    fn count(
        &mut self,
        s: &Scope<'_, K>,
        w: TimeWindow,
        n: u64,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let counts = self.core.backend.table::<TimeWindow, u64>(COUNTS)?;
        let c = counts.get_or_insert_with(s.kg, s.key, &w, || 0)?;
        *c += 1;
        let full = *c >= n;
        if *c == 1 {
            self.register_cleanup(s.key, TimerKind::CleanupWindow(w), &w);
        }
        if full {
            self.core
                .backend
                .table::<TimeWindow, u64>(COUNTS)?
                .insert(s.kg, s.key, &w, 0)?;
            self.fire(s, w, out)?;
        }
        Ok(())
    }

    /// After `w` received a record: fire now if its time has passed (late
    /// firing within the allowed lateness), else make sure it will fire.
    fn on_added(
        &mut self,
        s: &Scope<'_, K>,
        w: TimeWindow,
        ts: Timestamp,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        match self.base {
            Trigger::Count(n) => self.count(s, w, n, out),
            Trigger::Never => Ok(()),
            _ => {
                let now = self.now_in(self.trigger_domain());
                if w.max_timestamp() <= now {
                    self.fire(s, w, out).map(drop)
                } else {
                    self.register_fire(s.key, w);
                    self.register_early(s.key, w, ts.max(now));
                    Ok(())
                }
            }
        }
    }

    fn add_aligned(
        &mut self,
        s: &Scope<'_, K>,
        record: Record<T>,
        ts: Timestamp,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let Scheme::Aligned {
            size,
            slide,
            offset,
            pane,
        } = self.settings.spec.scheme
        else {
            unreachable!("add_aligned is only called for aligned windows")
        };
        let ps = pane_start(pane, offset, ts);
        let p = TimeWindow::new(Timestamp(ps), Timestamp(ps + pane));
        // Window starts s with s <= ps and ps + pane <= s + size, on the slide grid.
        let last_start = offset + (ps - offset).div_euclid(slide) * slide;
        let window = |start: i64| TimeWindow::new(Timestamp(start), Timestamp(start + size));
        if self.is_late(&window(last_start)) {
            self.on_late(record, out);
            return Ok(());
        }
        let agg = &self.agg;
        let panes = self.core.backend.table::<(), Panes<A::Acc>>(PANES)?;
        let map = panes.get_or_insert_with(s.kg, s.key, &(), Panes::new)?;
        let mut created = false;
        let acc = map.entry(ps).or_insert_with(|| {
            created = true;
            agg.create()
        });
        agg.add(acc, record.value);
        if created {
            self.register_cleanup(s.key, TimerKind::CleanupPane(p), &window(last_start));
        }
        let trigger_now = self.now_in(self.trigger_domain());
        let counting = matches!(self.base, Trigger::Count(_));
        let early = self.early_interval().is_some();
        // Only a new pane, a pane of windows that already fired, or a
        // per-window trigger needs to look at individual windows; the common
        // case (a record for an existing pane in open windows) stops here.
        if !(created || counting || early || p.max_timestamp() <= trigger_now) {
            return Ok(());
        }
        let lowest = ps + pane - size;
        let mut start = offset + (lowest - offset).div_euclid(slide) * slide;
        if start < lowest {
            start += slide;
        }
        let mut registered_next = false;
        while start <= last_start {
            let w = window(start);
            start += slide;
            if self.is_late(&w) {
                continue;
            }
            if counting || early || w.max_timestamp() <= trigger_now {
                self.on_added(s, w, ts, out)?;
            } else if !registered_next {
                // The first window still to fire; later ones follow by the
                // chain in `on_fire`.
                self.on_added(s, w, ts, out)?;
                registered_next = true;
            }
        }
        Ok(())
    }

    fn add_session(
        &mut self,
        s: &Scope<'_, K>,
        record: Record<T>,
        ts: Timestamp,
        gap: &SessionGap<T>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let gap_ms = match gap {
            SessionGap::Static(g) => *g,
            SessionGap::Dynamic(f) => (f(&record.value).as_millis() as i64).max(1),
        };
        let proto = TimeWindow::new(ts, ts.add_millis(gap_ms));
        let sessions = self.core.backend.table::<(), Vec<Session>>(SESSIONS)?;
        let (mut merged, mut touching, mut first) = (proto, 0usize, None);
        if let Some(list) = sessions.get(s.kg, s.key, &())? {
            for (i, x) in list
                .iter()
                .enumerate()
                .filter(|(_, x)| x.window.intersects(&proto))
            {
                merged = merged.cover(&x.window);
                touching += 1;
                first.get_or_insert((i, *x));
            }
        }
        if self.is_late(&merged) {
            self.on_late(record, out);
            return Ok(());
        }
        let state = first.map_or(merged, |(_, x)| x.state);
        // New and merged sessions register their own timers; a session that
        // grew hands over from its old timers when they fall due.
        let mut own_timers = touching != 1;
        if touching > 1 {
            self.merge_sessions(s, &proto, merged, state)?;
        } else {
            let list = self
                .core
                .backend
                .table::<(), Vec<Session>>(SESSIONS)?
                .get_or_insert_with(s.kg, s.key, &(), Vec::new)?;
            match first {
                Some((i, old)) => {
                    list[i].window = merged;
                    if old.window != merged {
                        self.move_count(s, &old.window, &merged)?;
                    }
                    let fired = old.window.max_timestamp() <= self.now_in(self.trigger_domain());
                    if old.window != merged && (old.window.end == merged.end || fired) {
                        // Grown at the start only (the old timers fall due at
                        // the same instants and cannot hand over to later
                        // ones), or grown after firing (its firing timer is
                        // gone): the new window gets its own timers.
                        own_timers = true;
                        self.register_cleanup(s.key, TimerKind::CleanupPane(merged), &merged);
                    }
                }
                None => {
                    list.push(Session {
                        window: merged,
                        state,
                    });
                    self.register_cleanup(s.key, TimerKind::CleanupPane(merged), &merged);
                }
            }
        }
        let agg = &self.agg;
        let table = self.core.backend.table::<TimeWindow, A::Acc>(CONTENTS)?;
        agg.add(
            table.get_or_insert_with(s.kg, s.key, &state, || agg.create())?,
            record.value,
        );
        // Timers of a session that grew are not moved: when one fires at the
        // old end it re-registers at the session's current end. A record in
        // an existing session therefore needs no timer work unless the
        // trigger counts or fires at once.
        let plain = matches!(self.base, Trigger::EventTime | Trigger::ProcessingTime);
        if !own_timers && plain && merged.max_timestamp() > self.now_in(self.trigger_domain()) {
            return Ok(());
        }
        self.on_added(s, merged, ts, out)
    }

    /// Several sessions touch a new record: their accumulators go into the
    /// first one's state window, their entries become one.
    fn merge_sessions(
        &mut self,
        s: &Scope<'_, K>,
        proto: &TimeWindow,
        merged: TimeWindow,
        state: TimeWindow,
    ) -> UserResult {
        let sessions = self.core.backend.table::<(), Vec<Session>>(SESSIONS)?;
        let list = sessions.get_or_insert_with(s.kg, s.key, &(), Vec::new)?;
        let touching: Vec<Session> = list
            .iter()
            .filter(|x| x.window.intersects(proto))
            .copied()
            .collect();
        list.retain(|x| !x.window.intersects(proto));
        list.push(Session {
            window: merged,
            state,
        });
        self.register_cleanup(s.key, TimerKind::CleanupPane(merged), &merged);
        for x in &touching {
            if x.state != state {
                if let Some(acc) = self.contents()?.remove(s.kg, s.key, &x.state)? {
                    let agg = &self.agg;
                    let table = self.core.backend.table::<TimeWindow, A::Acc>(CONTENTS)?;
                    agg.merge(
                        table.get_or_insert_with(s.kg, s.key, &state, || agg.create())?,
                        acc,
                    );
                }
            }
            self.move_count(s, &x.window, &merged)?;
        }
        Ok(())
    }

    /// Count triggers: a session's count follows it when it grows or merges.
    fn move_count(&mut self, s: &Scope<'_, K>, from: &TimeWindow, to: &TimeWindow) -> UserResult {
        if !matches!(self.base, Trigger::Count(_)) {
            return Ok(());
        }
        let counts = self.core.backend.table::<TimeWindow, u64>(COUNTS)?;
        if let Some(c) = counts.remove(s.kg, s.key, from)? {
            *counts.get_or_insert_with(s.kg, s.key, to, || 0)? += c;
        }
        Ok(())
    }

    fn add_global(
        &mut self,
        s: &Scope<'_, K>,
        record: Record<T>,
        ts: Timestamp,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let w = TimeWindow::global();
        let agg = &self.agg;
        let table = self.core.backend.table::<TimeWindow, A::Acc>(CONTENTS)?;
        let mut created = false;
        let acc = table.get_or_insert_with(s.kg, s.key, &w, || {
            created = true;
            agg.create()
        })?;
        agg.add(acc, record.value);
        if created {
            self.register_cleanup(s.key, TimerKind::CleanupPane(w), &w);
        }
        self.on_added(s, w, ts, out)
    }

    /// After aligned window `w` fired: the next window of this key that holds
    /// a pane, if any (skipping empty windows).
    /// After aligned window `w` fired: the next window of this key that holds
    /// a pane, given the first pane at or after `w.start + slide`.
    fn next_aligned_window(&self, w: &TimeWindow, first: Option<i64>) -> Option<TimeWindow> {
        let Scheme::Aligned {
            size,
            slide,
            offset,
            pane,
        } = self.settings.spec.scheme
        else {
            return None;
        };
        let first = first?;
        // The first window end on the grid that covers the pane.
        let grid = offset + size;
        let first_end = grid + (first + pane - grid + slide - 1).div_euclid(slide) * slide;
        let end = first_end.max(w.end.millis() + slide);
        Some(TimeWindow::new(Timestamp(end - size), Timestamp(end)))
    }

    /// The open session whose window is `w`.
    /// The open session whose window is `w`.
    fn session(&mut self, s: &Scope<'_, K>, w: &TimeWindow) -> UserResult<Option<Session>> {
        let sessions = self.core.backend.table::<(), Vec<Session>>(SESSIONS)?;
        Ok(sessions
            .get(s.kg, s.key, &())?
            .and_then(|l| l.iter().find(|x| x.window == *w).copied()))
    }

    /// For a timer due at `at` for session window `w`: `Ok(true)` when `w`
    /// is still a session as it is. When the session has grown since, the
    /// timer is set again for its current window if that is later (`kind`
    /// builds the timer; a merge registers its own timers) and `Ok(false)`
    /// is returned; also when the session is gone.
    fn session_timer_current(
        &mut self,
        s: &Scope<'_, K>,
        at: Timestamp,
        w: &TimeWindow,
        kind: fn(TimeWindow) -> TimerKind,
    ) -> UserResult<bool> {
        let sessions = self.core.backend.table::<(), Vec<Session>>(SESSIONS)?;
        let Some(x) = sessions.get(s.kg, s.key, &())?.and_then(|l| {
            l.iter()
                .find(|x| x.window.start <= w.start && w.end <= x.window.end)
                .copied()
        }) else {
            return Ok(false);
        };
        if x.window == *w {
            return Ok(true);
        }
        match kind(x.window) {
            TimerKind::Fire(now) if now.max_timestamp() > at => self.register_fire(s.key, now),
            cleanup @ TimerKind::CleanupPane(now) if self.cleanup_time(&now) > at => {
                self.register_cleanup(s.key, cleanup, &now)
            }
            TimerKind::Early(now) => self.register_early(s.key, now, at),
            _ => {}
        }
        Ok(false)
    }

    fn on_timer(
        &mut self,
        at: Timestamp,
        key: K,
        kind: TimerKind,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let kg = self.core.key_group(&key);
        let s = Scope { key: &key, kg };
        let session = matches!(self.settings.spec.scheme, Scheme::Session(_));
        match kind {
            TimerKind::Fire(w) => {
                if session && !self.session_timer_current(&s, at, &w, TimerKind::Fire)? {
                    return Ok(());
                }
                let first = self.fire(&s, w, out)?;
                if let Some(next) = self.next_aligned_window(&w, first) {
                    self.register_fire(&key, next);
                }
            }
            TimerKind::Early(w) => {
                if session && !self.session_timer_current(&s, at, &w, TimerKind::Early)? {
                    return Ok(());
                }
                self.fire(&s, w, out)?;
                self.register_early(&key, w, at);
            }
            TimerKind::CleanupPane(p) => match self.settings.spec.scheme {
                Scheme::Aligned { .. } => {
                    let panes = self.core.backend.table::<(), Panes<A::Acc>>(PANES)?;
                    if let Some(map) = panes.get_mut(kg, &key, &())? {
                        map.remove(&p.start.millis());
                        if map.is_empty() {
                            panes.remove(kg, &key, &())?;
                        }
                    }
                }
                Scheme::Session(_) => {
                    if !self.session_timer_current(&s, at, &p, TimerKind::CleanupPane)? {
                        return Ok(());
                    }
                    let Some(x) = self.session(&s, &p)? else {
                        return Ok(());
                    };
                    self.contents()?.remove(kg, &key, &x.state)?;
                    let sessions = self.core.backend.table::<(), Vec<Session>>(SESSIONS)?;
                    if let Some(list) = sessions.get_mut(kg, &key, &())? {
                        list.retain(|y| y.window != p);
                        if list.is_empty() {
                            sessions.remove(kg, &key, &())?;
                        }
                    }
                    self.clear_window(&s, p)?;
                }
                Scheme::Global => {
                    self.contents()?.remove(kg, &key, &p)?;
                    self.clear_window(&s, p)?;
                }
            },
            TimerKind::CleanupWindow(w) => self.clear_window(&s, w)?,
        }
        Ok(())
    }

    /// Drops a window's count and lets the function clear its state.
    /// Drops a window's count and lets the function clear its state.
    fn clear_window(&mut self, s: &Scope<'_, K>, w: TimeWindow) -> UserResult {
        self.core
            .backend
            .table::<TimeWindow, u64>(COUNTS)?
            .remove(s.kg, s.key, &w)?;
        if !self.func.keeps_window_state() {
            return Ok(());
        }
        let mut ctx = WindowContext {
            window: w,
            key: s.key,
            key_group: s.kg,
            watermark: self.core.timers.watermark(),
            clock: self.clock.as_ref(),
            backend: &mut self.core.backend,
        };
        self.func.clear(s.key, &mut ctx)
    }

    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        up_to: Timestamp,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.core.timers.event,
                TimeDomain::ProcessingTime => &mut self.core.timers.processing,
            };
            let Some((at, due)) = queue.pop_due(up_to) else {
                return Ok(());
            };
            let (firings, cleanups): (Vec<_>, Vec<_>) =
                due.into_iter().partition(|(_, k)| k.is_firing());
            for (key, kind) in firings.into_iter().chain(cleanups) {
                self.on_timer(at, key, kind, out)?;
            }
        }
    }
}

impl<K, T, A, F, O> Operator for WindowOperator<K, T, A, F, O>
where
    K: Key,
    T: Data,
    A: AggregateFunction<In = T>,
    F: ProcessWindowFunction<K, A::Out, O>,
    O: Data,
{
    type In = T;
    type Out = O;

    fn open(&mut self, ctx: &eddy_engine::context::RuntimeContext) -> UserResult {
        Ok(self.core.open(ctx)?)
    }

    fn snapshot_state(&mut self, out: &mut eddy_engine::checkpoint::StateSnapshot) -> UserResult {
        Ok(self.core.snapshot(out)?)
    }

    fn process_batch(
        &mut self,
        batch: &mut Vec<Record<T>>,
        out: &mut Collector<'_, O>,
    ) -> UserResult {
        let now = (!self.event_time()).then(|| self.clock.now());
        let scheme = self.settings.spec.scheme.clone();
        for record in batch.drain(..) {
            let key = (self.key)(&record.value);
            let kg = self.core.key_group(&key);
            let s = Scope { key: &key, kg };
            let ts = now.unwrap_or(record.ts);
            match &scheme {
                Scheme::Aligned { .. } => self.add_aligned(&s, record, ts, out)?,
                Scheme::Session(gap) => self.add_session(&s, record, ts, gap, out)?,
                Scheme::Global => self.add_global(&s, record, ts, out)?,
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        let watermark = self.core.timers.advance_watermark(watermark);
        self.fire_timers(TimeDomain::EventTime, watermark, out)
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Collector<'_, O>) -> UserResult {
        self.fire_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn next_processing_time(&self) -> Option<Timestamp> {
        self.core.timers.processing.next_time()
    }

    /// A bounded input has ended: processing-time windows fire now rather
    /// than never.
    fn finish(&mut self, out: &mut Collector<'_, O>) -> UserResult {
        self.fire_timers(TimeDomain::ProcessingTime, Timestamp::MAX, out)
    }

    fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.core.metrics()
    }
}
