//! Ready-made aggregate functions for windows: count, sum, min, max, average,
//! and pairs and triples of them over the same input.

use std::marker::PhantomData;
use std::ops::Add;
use std::sync::Arc;

use eddy_engine::element::Data;
use eddy_engine::state::AggregateFunction;

/// Counts records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

/// Counts records of type `T` (what `Count` becomes for a given input).
pub struct CountOf<T>(PhantomData<fn(T)>);

impl<T> Clone for CountOf<T> {
    fn clone(&self) -> Self {
        CountOf(PhantomData)
    }
}

impl<T: Send + 'static> AggregateFunction for CountOf<T> {
    type In = T;
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _value: T) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Turns a ready-made aggregate description into an [`AggregateFunction`]
/// for input `T`.
pub trait IntoAggregate<T> {
    /// The aggregate function.
    type Agg: AggregateFunction<In = T> + Clone;
    /// Builds it.
    fn into_aggregate(self) -> Self::Agg;
}

impl<T: Send + 'static> IntoAggregate<T> for Count {
    type Agg = CountOf<T>;
    fn into_aggregate(self) -> CountOf<T> {
        CountOf(PhantomData)
    }
}

/// Numbers that `Sum`, `Min`, `Max` and `Avg` work on.
pub trait Numeric: Data + Copy + PartialOrd + Add<Output = Self> + Default {
    /// The value as `f64` (for averages).
    fn to_f64(self) -> f64;
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}

numeric!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

/// A numeric field extracted from a record.
type Field<T, N> = Arc<dyn Fn(&T) -> N + Send + Sync>;

macro_rules! field_aggregate {
    ($(#[$doc:meta])* $name:ident, $acc:ty, $out:ty, create: $create:expr, add: $add:expr, merge: $merge:expr, result: $result:expr) => {
        $(#[$doc])*
        pub struct $name<T, N> {
            field: Field<T, N>,
        }

        impl<T, N> Clone for $name<T, N> {
            fn clone(&self) -> Self {
                $name { field: Arc::clone(&self.field) }
            }
        }

        impl<T, N> $name<T, N> {
            /// Aggregates the number `field` extracts from each record.
            pub fn of(field: impl Fn(&T) -> N + Send + Sync + 'static) -> Self {
                $name { field: Arc::new(field) }
            }
        }

        impl<T, N> AggregateFunction for $name<T, N>
        where
            T: Send + 'static,
            N: Numeric,
        {
            type In = T;
            type Acc = $acc;
            type Out = $out;
            fn create(&self) -> $acc {
                $create
            }
            fn add(&self, acc: &mut $acc, value: T) {
                let v: N = (self.field)(&value);
                ($add)(acc, v)
            }
            fn merge(&self, acc: &mut $acc, other: $acc) {
                ($merge)(acc, other)
            }
            fn result(&self, acc: &$acc) -> $out {
                ($result)(acc)
            }
        }

        impl<T, N> IntoAggregate<T> for $name<T, N>
        where
            T: Send + 'static,
            N: Numeric,
        {
            type Agg = Self;
            fn into_aggregate(self) -> Self {
                self
            }
        }
    };
}

fn keep_min<N: PartialOrd + Copy>(acc: &mut Option<N>, v: N) {
    if acc.is_none_or(|a| v < a) {
        *acc = Some(v);
    }
}

fn keep_max<N: PartialOrd + Copy>(acc: &mut Option<N>, v: N) {
    if acc.is_none_or(|a| v > a) {
        *acc = Some(v);
    }
}

field_aggregate!(
    /// The sum of a numeric field.
    Sum, N, N,
    create: N::default(),
    add: |acc: &mut N, v: N| *acc = *acc + v,
    merge: |acc: &mut N, o: N| *acc = *acc + o,
    result: |acc: &N| *acc
);
field_aggregate!(
    /// The smallest value of a field (`None` for an empty window).
    Min, Option<N>, Option<N>,
    create: None,
    add: |acc: &mut Option<N>, v: N| keep_min(acc, v),
    merge: |acc: &mut Option<N>, o: Option<N>| if let Some(o) = o { keep_min(acc, o) },
    result: |acc: &Option<N>| *acc
);
field_aggregate!(
    /// The largest value of a field (`None` for an empty window).
    Max, Option<N>, Option<N>,
    create: None,
    add: |acc: &mut Option<N>, v: N| keep_max(acc, v),
    merge: |acc: &mut Option<N>, o: Option<N>| if let Some(o) = o { keep_max(acc, o) },
    result: |acc: &Option<N>| *acc
);
field_aggregate!(
    /// The mean of a numeric field, as `f64` (`NaN` for an empty window).
    Avg, (f64, u64), f64,
    create: (0.0, 0),
    add: |acc: &mut (f64, u64), v: N| { acc.0 += v.to_f64(); acc.1 += 1; },
    merge: |acc: &mut (f64, u64), o: (f64, u64)| { acc.0 += o.0; acc.1 += o.1; },
    result: |acc: &(f64, u64)| acc.0 / acc.1 as f64
);

/// Two aggregates over the same input, computed in one pass.
#[derive(Clone)]
pub struct Both<A, B>(pub A, pub B);

impl<T: Clone, A, B> AggregateFunction for Both<A, B>
where
    A: AggregateFunction<In = T>,
    B: AggregateFunction<In = T>,
{
    type In = T;
    type Acc = (A::Acc, B::Acc);
    type Out = (A::Out, B::Out);
    fn create(&self) -> Self::Acc {
        (self.0.create(), self.1.create())
    }
    fn add(&self, acc: &mut Self::Acc, value: T) {
        self.0.add(&mut acc.0, value.clone());
        self.1.add(&mut acc.1, value);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(&mut acc.0, other.0);
        self.1.merge(&mut acc.1, other.1);
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        (self.0.result(&acc.0), self.1.result(&acc.1))
    }
}

impl<T: Clone, A, B> IntoAggregate<T> for (A, B)
where
    A: IntoAggregate<T>,
    B: IntoAggregate<T>,
{
    type Agg = Both<A::Agg, B::Agg>;
    fn into_aggregate(self) -> Self::Agg {
        Both(self.0.into_aggregate(), self.1.into_aggregate())
    }
}

/// Three aggregates over the same input, computed in one pass.
#[derive(Clone)]
pub struct Three<A, B, C>(pub A, pub B, pub C);

impl<T: Clone, A, B, C> AggregateFunction for Three<A, B, C>
where
    A: AggregateFunction<In = T>,
    B: AggregateFunction<In = T>,
    C: AggregateFunction<In = T>,
{
    type In = T;
    type Acc = (A::Acc, B::Acc, C::Acc);
    type Out = (A::Out, B::Out, C::Out);
    fn create(&self) -> Self::Acc {
        (self.0.create(), self.1.create(), self.2.create())
    }
    fn add(&self, acc: &mut Self::Acc, value: T) {
        self.0.add(&mut acc.0, value.clone());
        self.1.add(&mut acc.1, value.clone());
        self.2.add(&mut acc.2, value);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(&mut acc.0, other.0);
        self.1.merge(&mut acc.1, other.1);
        self.2.merge(&mut acc.2, other.2);
    }
    fn result(&self, acc: &Self::Acc) -> Self::Out {
        (
            self.0.result(&acc.0),
            self.1.result(&acc.1),
            self.2.result(&acc.2),
        )
    }
}

impl<T: Clone, A, B, C> IntoAggregate<T> for (A, B, C)
where
    A: IntoAggregate<T>,
    B: IntoAggregate<T>,
    C: IntoAggregate<T>,
{
    type Agg = Three<A::Agg, B::Agg, C::Agg>;
    fn into_aggregate(self) -> Self::Agg {
        Three(
            self.0.into_aggregate(),
            self.1.into_aggregate(),
            self.2.into_aggregate(),
        )
    }
}

/// Folds records with a reduce function; the accumulator is the folded
/// record (or nothing yet).
pub struct ReduceWith<T, F> {
    f: Arc<F>,
    _t: PhantomData<fn(T)>,
}

impl<T, F> Clone for ReduceWith<T, F> {
    fn clone(&self) -> Self {
        ReduceWith {
            f: Arc::clone(&self.f),
            _t: PhantomData,
        }
    }
}

impl<T, F> ReduceWith<T, F> {
    /// Reduces with `f`.
    pub fn new(f: F) -> Self {
        ReduceWith {
            f: Arc::new(f),
            _t: PhantomData,
        }
    }
}

impl<T: Data, F: Fn(T, T) -> T + Send + Sync + 'static> AggregateFunction for ReduceWith<T, F> {
    type In = T;
    type Acc = Option<T>;
    type Out = T;
    fn create(&self) -> Option<T> {
        None
    }
    fn add(&self, acc: &mut Option<T>, value: T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.f)(a, value),
            None => value,
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }
    fn result(&self, acc: &Option<T>) -> T {
        acc.clone()
            .expect("a window fires only when it holds a record")
    }
}

/// Keeps every record (for process window functions).
pub struct CollectAll<T>(PhantomData<fn(T)>);

impl<T> Clone for CollectAll<T> {
    fn clone(&self) -> Self {
        CollectAll(PhantomData)
    }
}

impl<T> Default for CollectAll<T> {
    fn default() -> Self {
        CollectAll(PhantomData)
    }
}

impl<T: Data> AggregateFunction for CollectAll<T> {
    type In = T;
    type Acc = Vec<T>;
    type Out = Vec<T>;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<T>, value: T) {
        acc.push(value);
    }
    fn merge(&self, acc: &mut Vec<T>, other: Vec<T>) {
        acc.extend(other);
    }
    fn result(&self, acc: &Vec<T>) -> Vec<T> {
        acc.clone()
    }
}
