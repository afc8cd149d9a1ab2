//! # eddy-engine
//!
//! The core of Eddy: the data model ([`element`]), the typed DSL ([`dsl`]),
//! the job graph ([`graph`]), the local runtime ([`runtime`]), keyed state
//! and timers ([`state`]), event time ([`time`]), and the extension traits
//! that operators and connectors plug into ([`operator`], [`source`],
//! [`sink`]).
//!
//! This crate must never depend on another Eddy crate, nor know about windows,
//! joins, Kafka or Redis: those plug in through the public traits here.
#![deny(missing_docs)]

pub mod clock;
pub mod context;
pub mod element;
pub mod error;
pub mod keygroup;
pub mod sink;
pub mod source;
pub mod time;
