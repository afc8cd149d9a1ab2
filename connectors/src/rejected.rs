//! [`OnRejected`]: what a sink does with a write its server refuses.

/// What a sink does with a write its server refuses — a row ClickHouse
/// cannot parse into the table, a Redis command on a key of another type.
/// Either way nothing is lost silently: the refused write is kept, with the
/// server's reason, where the sink's docs say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnRejected {
    /// Fail the job (the default), naming the write, where it went and the
    /// server's reply.
    #[default]
    FailJob,
    /// Keep it in the sink's dead-letter output with the server's reply,
    /// and go on.
    DeadLetter,
}
