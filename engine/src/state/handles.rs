//! State descriptors and the handles they bind to a key and namespace.
//!
//! A descriptor (`ValueStateDesc`, `ListStateDesc`, …) names a state and fixes
//! its type; it is usually a `const`. Binding it to the current key through a
//! context gives a short-lived handle whose methods read and write the state.
//! All methods are fallible because a disk-based backend can fail.

use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use hashbrown::HashMap;

use crate::element::{Data, Key, Timestamp};
use crate::error::StateError;
use crate::keygroup::KeyGroup;
use crate::state::backend::{KeyedStateBackend, StateTable};
use crate::state::ttl::{StateTtl, TtlValue};
use crate::state::Namespace;

/// The current key and namespace a handle is bound to.
pub struct StateScope<'a, K, N> {
    pub(crate) backend: &'a mut KeyedStateBackend<K>,
    pub(crate) key: &'a K,
    pub(crate) key_group: KeyGroup,
    pub(crate) ns: &'a N,
}

impl<K: Key, N: Namespace> StateScope<'_, K, N> {
    fn now_if(&self, ttl: Option<StateTtl>) -> Timestamp {
        // Reading the clock costs a little; only TTL states need it.
        if ttl.is_some() {
            self.backend.now()
        } else {
            Timestamp::MIN
        }
    }

    fn table<S: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
        &mut self,
        name: &'static str,
    ) -> Result<&mut StateTable<K, N, S>, StateError> {
        self.backend.table::<N, S>(name)
    }
}

/// A state descriptor: names a state and the handle type it binds to.
pub trait StateDescriptor {
    /// The handle bound to one key and namespace.
    type Handle<'a, K: Key, N: Namespace>
    where
        Self: 'a;

    /// The state's name, unique within its operator.
    fn name(&self) -> &'static str;

    /// Binds the state to `scope`'s key and namespace.
    fn bind<'a, K: Key, N: Namespace>(
        &'a self,
        scope: StateScope<'a, K, N>,
    ) -> Self::Handle<'a, K, N>;
}

macro_rules! ttl_builder {
    () => {
        /// Values expire `ttl` of processing time after their last write and
        /// are never returned once expired.
        pub const fn with_ttl(mut self, ttl: Duration) -> Self {
            self.ttl = Some(StateTtl::after_write(ttl));
            self
        }
    };
}

/// Reads a live value out of a TTL-wrapped slot, dropping it if expired.
fn live<K: Key, N: Namespace, V: Data>(
    table: &mut StateTable<K, N, TtlValue<V>>,
    scope: (KeyGroup, &K, &N),
    now: Timestamp,
) -> Result<bool, StateError> {
    Ok(match table.get(scope.0, scope.1, scope.2)? {
        Some(v) if v.expired(now) => {
            table.remove(scope.0, scope.1, scope.2)?;
            false
        }
        Some(_) => true,
        None => false,
    })
}

// ---------------------------------------------------------------- value

/// Declares a single value per key (and namespace).
pub struct ValueStateDesc<V> {
    name: &'static str,
    ttl: Option<StateTtl>,
    _v: PhantomData<fn() -> V>,
}

impl<V> ValueStateDesc<V> {
    /// A value state called `name`.
    pub const fn new(name: &'static str) -> Self {
        ValueStateDesc {
            name,
            ttl: None,
            _v: PhantomData,
        }
    }
    ttl_builder!();
}

impl<V: Data> StateDescriptor for ValueStateDesc<V> {
    type Handle<'a, K: Key, N: Namespace> = ValueState<'a, K, N, V>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn bind<'a, K: Key, N: Namespace>(
        &'a self,
        scope: StateScope<'a, K, N>,
    ) -> ValueState<'a, K, N, V> {
        ValueState {
            scope,
            name: self.name,
            ttl: self.ttl,
            _v: PhantomData,
        }
    }
}

/// A single value for the current key.
pub struct ValueState<'a, K, N, V> {
    scope: StateScope<'a, K, N>,
    name: &'static str,
    ttl: Option<StateTtl>,
    _v: PhantomData<fn() -> V>,
}

impl<K: Key, N: Namespace, V: Data> ValueState<'_, K, N, V> {
    /// The current value, if set and not expired.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn get(&mut self) -> Result<Option<V>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<TtlValue<V>>(self.name)?;
        if !live(table, (kg, key, ns), now)? {
            return Ok(None);
        }
        Ok(table.get(kg, key, ns)?.map(|v| v.value.clone()))
    }

    /// Sets the value.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn set(&mut self, value: V) -> Result<(), StateError> {
        let expires = StateTtl::expiry(self.ttl, self.scope.now_if(self.ttl));
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<TtlValue<V>>(self.name)?;
        table.insert(kg, key, ns, TtlValue { value, expires })
    }

    /// Removes the value and returns it, if it was set and not expired.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn take(&mut self) -> Result<Option<V>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<TtlValue<V>>(self.name)?;
        Ok(table
            .remove(kg, key, ns)?
            .filter(|v| !v.expired(now))
            .map(|v| v.value))
    }

    /// Removes the value.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn clear(&mut self) -> Result<(), StateError> {
        self.take().map(drop)
    }
}

// ---------------------------------------------------------------- list

/// Declares a list of values per key (and namespace). The TTL applies to the
/// whole list and restarts on every append.
pub struct ListStateDesc<V> {
    name: &'static str,
    ttl: Option<StateTtl>,
    _v: PhantomData<fn() -> V>,
}

impl<V> ListStateDesc<V> {
    /// A list state called `name`.
    pub const fn new(name: &'static str) -> Self {
        ListStateDesc {
            name,
            ttl: None,
            _v: PhantomData,
        }
    }
    ttl_builder!();
}

impl<V: Data> StateDescriptor for ListStateDesc<V> {
    type Handle<'a, K: Key, N: Namespace> = ListState<'a, K, N, V>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn bind<'a, K: Key, N: Namespace>(
        &'a self,
        scope: StateScope<'a, K, N>,
    ) -> ListState<'a, K, N, V> {
        ListState {
            scope,
            name: self.name,
            ttl: self.ttl,
            _v: PhantomData,
        }
    }
}

/// A list of values for the current key.
pub struct ListState<'a, K, N, V> {
    scope: StateScope<'a, K, N>,
    name: &'static str,
    ttl: Option<StateTtl>,
    _v: PhantomData<fn() -> V>,
}

impl<K: Key, N: Namespace, V: Data> ListState<'_, K, N, V> {
    fn list(&mut self) -> Result<&mut TtlValue<Vec<V>>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let expires = StateTtl::expiry(self.ttl, now);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<TtlValue<Vec<V>>>(self.name)?;
        live(table, (kg, key, ns), now)?;
        let slot = table.get_or_insert_with(kg, key, ns, || TtlValue {
            value: Vec::new(),
            expires,
        })?;
        slot.expires = expires;
        Ok(slot)
    }

    /// Appends a value.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn add(&mut self, value: V) -> Result<(), StateError> {
        self.list()?.value.push(value);
        Ok(())
    }

    /// Appends every value of `values`.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn add_all(&mut self, values: impl IntoIterator<Item = V>) -> Result<(), StateError> {
        self.list()?.value.extend(values);
        Ok(())
    }

    /// A copy of the list (empty when unset or expired).
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn get(&mut self) -> Result<Vec<V>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<TtlValue<Vec<V>>>(self.name)?;
        if !live(table, (kg, key, ns), now)? {
            return Ok(Vec::new());
        }
        Ok(table
            .get(kg, key, ns)?
            .map(|v| v.value.clone())
            .unwrap_or_default())
    }

    /// Removes the list and returns it.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn take(&mut self) -> Result<Vec<V>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<TtlValue<Vec<V>>>(self.name)?;
        Ok(table
            .remove(kg, key, ns)?
            .filter(|v| !v.expired(now))
            .map(|v| v.value)
            .unwrap_or_default())
    }

    /// Replaces the list (an empty `values` clears it).
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn update(&mut self, values: Vec<V>) -> Result<(), StateError> {
        if values.is_empty() {
            return self.clear();
        }
        self.list()?.value = values;
        Ok(())
    }

    /// Removes the list.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn clear(&mut self) -> Result<(), StateError> {
        self.take().map(drop)
    }
}

// ---------------------------------------------------------------- map

/// Declares a map per key (and namespace). The TTL applies to each entry.
pub struct MapStateDesc<UK, UV> {
    name: &'static str,
    ttl: Option<StateTtl>,
    _kv: PhantomData<fn() -> (UK, UV)>,
}

impl<UK, UV> MapStateDesc<UK, UV> {
    /// A map state called `name`.
    pub const fn new(name: &'static str) -> Self {
        MapStateDesc {
            name,
            ttl: None,
            _kv: PhantomData,
        }
    }
    ttl_builder!();
}

impl<UK: Data + Hash + Eq, UV: Data> StateDescriptor for MapStateDesc<UK, UV> {
    type Handle<'a, K: Key, N: Namespace> = MapState<'a, K, N, UK, UV>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn bind<'a, K: Key, N: Namespace>(
        &'a self,
        scope: StateScope<'a, K, N>,
    ) -> MapState<'a, K, N, UK, UV> {
        MapState {
            scope,
            name: self.name,
            ttl: self.ttl,
            _kv: PhantomData,
        }
    }
}

type MapSlot<UK, UV> = HashMap<UK, TtlValue<UV>>;

/// A map for the current key.
pub struct MapState<'a, K, N, UK, UV> {
    scope: StateScope<'a, K, N>,
    name: &'static str,
    ttl: Option<StateTtl>,
    _kv: PhantomData<fn() -> (UK, UV)>,
}

impl<K: Key, N: Namespace, UK: Data + Hash + Eq, UV: Data> MapState<'_, K, N, UK, UV> {
    /// Runs `f` on the live entries of the map (expired ones removed first);
    /// drops the map when `f` leaves it empty.
    fn with_map<R>(
        &mut self,
        create: bool,
        f: impl FnOnce(&mut MapSlot<UK, UV>, Timestamp) -> R,
    ) -> Result<Option<R>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let table = self.scope.table::<MapSlot<UK, UV>>(self.name)?;
        let map = if create {
            table.get_or_insert_with(kg, key, ns, HashMap::new)?
        } else {
            match table.get_mut(kg, key, ns)? {
                Some(m) => m,
                None => return Ok(None),
            }
        };
        if self.ttl.is_some() {
            map.retain(|_, v| !v.expired(now));
        }
        let r = f(map, now);
        if map.is_empty() {
            table.remove(kg, key, ns)?;
        }
        Ok(Some(r))
    }

    /// The value under `key`.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn get(&mut self, key: &UK) -> Result<Option<UV>, StateError> {
        Ok(self
            .with_map(false, |m, _| m.get(key).map(|v| v.value.clone()))?
            .flatten())
    }

    /// True when `key` has a value.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn contains(&mut self, key: &UK) -> Result<bool, StateError> {
        Ok(self
            .with_map(false, |m, _| m.contains_key(key))?
            .unwrap_or(false))
    }

    /// Sets the value under `key`.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn put(&mut self, key: UK, value: UV) -> Result<(), StateError> {
        let ttl = self.ttl;
        self.with_map(true, |m, now| {
            let expires = StateTtl::expiry(ttl, now);
            m.insert(key, TtlValue { value, expires });
        })?;
        Ok(())
    }

    /// Removes and returns the value under `key`.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn remove(&mut self, key: &UK) -> Result<Option<UV>, StateError> {
        Ok(self
            .with_map(false, |m, _| m.remove(key).map(|v| v.value))?
            .flatten())
    }

    /// A copy of every live entry, in no particular order.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn entries(&mut self) -> Result<Vec<(UK, UV)>, StateError> {
        Ok(self
            .with_map(false, |m, _| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect()
            })?
            .unwrap_or_default())
    }

    /// True when the map has no live entry.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn is_empty(&mut self) -> Result<bool, StateError> {
        Ok(self.with_map(false, |m, _| m.is_empty())?.unwrap_or(true))
    }

    /// Removes the whole map.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn clear(&mut self) -> Result<(), StateError> {
        self.with_map(false, |m, _| m.clear())?;
        Ok(())
    }
}

// ---------------------------------------------------------------- reducing

/// Declares a value per key that folds every added value in with `reduce`.
pub struct ReducingStateDesc<V> {
    name: &'static str,
    reduce: fn(V, V) -> V,
    ttl: Option<StateTtl>,
}

impl<V> ReducingStateDesc<V> {
    /// A reducing state called `name`, combining values with `reduce`.
    pub const fn new(name: &'static str, reduce: fn(V, V) -> V) -> Self {
        ReducingStateDesc {
            name,
            reduce,
            ttl: None,
        }
    }
    ttl_builder!();
}

impl<V: Data> StateDescriptor for ReducingStateDesc<V> {
    type Handle<'a, K: Key, N: Namespace> = ReducingState<'a, K, N, V>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn bind<'a, K: Key, N: Namespace>(
        &'a self,
        scope: StateScope<'a, K, N>,
    ) -> ReducingState<'a, K, N, V> {
        ReducingState {
            value: ValueState {
                scope,
                name: self.name,
                ttl: self.ttl,
                _v: PhantomData,
            },
            reduce: self.reduce,
        }
    }
}

/// A value that folds in every added value.
pub struct ReducingState<'a, K, N, V> {
    value: ValueState<'a, K, N, V>,
    reduce: fn(V, V) -> V,
}

impl<K: Key, N: Namespace, V: Data> ReducingState<'_, K, N, V> {
    /// Folds `value` into the state.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn add(&mut self, value: V) -> Result<(), StateError> {
        let next = match self.value.take()? {
            Some(acc) => (self.reduce)(acc, value),
            None => value,
        };
        self.value.set(next)
    }

    /// The folded value, if anything was added.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn get(&mut self) -> Result<Option<V>, StateError> {
        self.value.get()
    }

    /// Removes the folded value.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn clear(&mut self) -> Result<(), StateError> {
        self.value.clear()
    }
}

// ---------------------------------------------------------------- aggregating

/// An incremental aggregation: an accumulator created empty, values added one
/// by one, accumulators merged (for session windows), a result read out.
pub trait AggregateFunction: Send + Sync + 'static {
    /// Input values.
    type In;
    /// The accumulator kept in state.
    type Acc: Data;
    /// The result.
    type Out;

    /// A fresh, empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one value to the accumulator.
    fn add(&self, acc: &mut Self::Acc, value: Self::In);
    /// Merges `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result for an accumulator.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Declares an accumulator per key driven by an [`AggregateFunction`].
pub struct AggregatingStateDesc<A> {
    name: &'static str,
    agg: A,
    ttl: Option<StateTtl>,
}

impl<A> AggregatingStateDesc<A> {
    /// An aggregating state called `name`, using `agg`.
    pub const fn new(name: &'static str, agg: A) -> Self {
        AggregatingStateDesc {
            name,
            agg,
            ttl: None,
        }
    }
    ttl_builder!();
}

impl<A: AggregateFunction> StateDescriptor for AggregatingStateDesc<A> {
    type Handle<'a, K: Key, N: Namespace> = AggregatingState<'a, K, N, A>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn bind<'a, K: Key, N: Namespace>(
        &'a self,
        scope: StateScope<'a, K, N>,
    ) -> AggregatingState<'a, K, N, A> {
        AggregatingState {
            scope,
            name: self.name,
            ttl: self.ttl,
            agg: &self.agg,
        }
    }
}

/// An accumulator for the current key.
pub struct AggregatingState<'a, K, N, A> {
    scope: StateScope<'a, K, N>,
    name: &'static str,
    ttl: Option<StateTtl>,
    agg: &'a A,
}

impl<K: Key, N: Namespace, A: AggregateFunction> AggregatingState<'_, K, N, A> {
    /// Adds `value` to the accumulator (creating it when absent).
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn add(&mut self, value: A::In) -> Result<(), StateError> {
        let now = self.scope.now_if(self.ttl);
        let expires = StateTtl::expiry(self.ttl, now);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let agg = self.agg;
        let table = self.scope.table::<TtlValue<A::Acc>>(self.name)?;
        live(table, (kg, key, ns), now)?;
        let slot = table.get_or_insert_with(kg, key, ns, || TtlValue {
            value: agg.create(),
            expires,
        })?;
        agg.add(&mut slot.value, value);
        slot.expires = expires;
        Ok(())
    }

    /// The result for the current accumulator, if anything was added.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn get(&mut self) -> Result<Option<A::Out>, StateError> {
        let now = self.scope.now_if(self.ttl);
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        let agg = self.agg;
        let table = self.scope.table::<TtlValue<A::Acc>>(self.name)?;
        if !live(table, (kg, key, ns), now)? {
            return Ok(None);
        }
        Ok(table.get(kg, key, ns)?.map(|v| agg.result(&v.value)))
    }

    /// Removes the accumulator.
    ///
    /// # Errors
    /// When the backend fails or the name is used with another type.
    pub fn clear(&mut self) -> Result<(), StateError> {
        let (kg, key, ns) = (self.scope.key_group, self.scope.key, self.scope.ns);
        self.scope
            .table::<TtlValue<A::Acc>>(self.name)?
            .remove(kg, key, ns)?;
        Ok(())
    }
}
