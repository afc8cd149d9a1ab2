//! # eddy-operators
//!
//! Windows (and, next, joins) for Eddy, built only on the engine's public
//! operator, state and timer API (`eddy_engine::operator`,
//! `eddy_engine::state`) and added to the DSL through extension traits that
//! the facade's prelude re-exports (`WindowExt`, `WindowAllExt`). Depends on
//! `eddy-engine` only.
#![deny(missing_docs)]

pub mod join;
pub mod window;
