//! Window functions: what a window emits when it fires.

use eddy_engine::clock::Clock;
use eddy_engine::element::{Data, Key, Timestamp};
use eddy_engine::error::UserResult;
use eddy_engine::keygroup::KeyGroup;
use eddy_engine::operator::Collector;
use eddy_engine::state::{KeyedStateBackend, StateDescriptor};

use crate::window::time::TimeWindow;

/// Called with a window's contents (all records, or an aggregate's result)
/// each time the window fires. Each subtask has its own clone.
pub trait ProcessWindowFunction<K, IN, OUT>: Send + 'static {
    /// Emits results for `ctx.window()` of `key`.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn process(
        &mut self,
        key: &K,
        input: IN,
        ctx: &mut WindowContext<'_, K>,
        out: &mut Collector<'_, OUT>,
    ) -> UserResult;

    /// The window is being dropped (its cleanup time passed): clear any
    /// per-window state the function keeps. Functions without per-window
    /// state need nothing, which is all the default does.
    ///
    /// # Errors
    /// Fails the job, naming the operator.
    fn clear(&mut self, _key: &K, _ctx: &mut WindowContext<'_, K>) -> UserResult {
        Ok(())
    }

    /// Whether the function keeps per-window state, so that `clear` must be
    /// called when each window is dropped. The default says yes; functions
    /// that never use `window_state` say no and save a timer per window.
    fn keeps_window_state(&self) -> bool {
        true
    }
}

/// Closures `|key, window, input, out|` are process window functions.
impl<K, IN, OUT, F> ProcessWindowFunction<K, IN, OUT> for F
where
    F: FnMut(&K, &TimeWindow, IN, &mut Collector<'_, OUT>) -> UserResult + Send + 'static,
{
    fn process(
        &mut self,
        key: &K,
        input: IN,
        ctx: &mut WindowContext<'_, K>,
        out: &mut Collector<'_, OUT>,
    ) -> UserResult {
        self(key, &ctx.window, input, out)
    }

    /// A closure sees no window state.
    fn keeps_window_state(&self) -> bool {
        false
    }
}

/// What a process window function sees besides the contents.
pub struct WindowContext<'a, K> {
    pub(crate) window: TimeWindow,
    pub(crate) key: &'a K,
    pub(crate) key_group: KeyGroup,
    pub(crate) watermark: Timestamp,
    pub(crate) clock: &'a dyn Clock,
    pub(crate) backend: &'a mut KeyedStateBackend<K>,
}

impl<K: Key> WindowContext<'_, K> {
    /// The window that fired.
    pub fn window(&self) -> TimeWindow {
        self.window
    }

    /// The operator's current input watermark.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Current processing time.
    pub fn current_processing_time(&self) -> Timestamp {
        self.clock.now()
    }

    /// State of this key scoped to this window (clear it in `clear`).
    pub fn window_state<'s, D: StateDescriptor>(
        &'s mut self,
        desc: &'s D,
    ) -> D::Handle<'s, K, TimeWindow> {
        let window = &self.window;
        self.backend.state(desc, self.key, self.key_group, window)
    }

    /// State of this key across all its windows.
    pub fn global_state<'s, D: StateDescriptor>(&'s mut self, desc: &'s D) -> D::Handle<'s, K, ()> {
        self.backend.state(desc, self.key, self.key_group, &())
    }
}

/// Emits `(key, window, result)`: the output of `reduce` and `aggregate`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmitWithWindow;

impl<K: Key, OUT: Data> ProcessWindowFunction<K, OUT, (K, TimeWindow, OUT)> for EmitWithWindow {
    fn process(
        &mut self,
        key: &K,
        input: OUT,
        ctx: &mut WindowContext<'_, K>,
        out: &mut Collector<'_, (K, TimeWindow, OUT)>,
    ) -> UserResult {
        out.emit((key.clone(), ctx.window, input));
        Ok(())
    }

    fn keeps_window_state(&self) -> bool {
        false
    }
}
