//! # eddy-operators
//!
//! Windows and joins for Eddy, built only on the engine's public operator,
//! state and timer API (`eddy_engine::operator`, `eddy_engine::state`) and
//! added to the DSL through extension traits that the facade's prelude
//! re-exports. Depends on `eddy-engine` only.
//!
//! Windows (tumbling, sliding, session, global) arrive with issue #3 and
//! joins with issue #4; this crate is their home.
