//! [`TransactionalKafkaSink`]: exactly-once writes to Kafka that survive a
//! crash between a checkpoint's completion and its commit.
//!
//! librdkafka cannot resume another producer's transaction: a restarted job
//! that calls `init_transactions` with the same transactional id aborts
//! whatever the crashed one had prepared. So this sink does not keep a
//! transaction open across the checkpoint. It keeps the *records*: at each
//! barrier the subtask's records since the last barrier become the
//! committable, stored in the checkpoint (a write-ahead log). When the
//! checkpoint completes, one transaction writes them and, atomically with
//! them, an epoch marker: the offset `epoch` committed for a consumer group
//! of the sink's own (`send_offsets_to_transaction`). A commit first reads
//! the marker; an epoch already there is not written again. A restored job
//! commits the restored committables the same way, so each one lands
//! exactly once whether or not its commit had happened before the crash.
//!
//! Each run of a writer has its own marker group (a random lineage in the
//! committable), so a job restored from an older savepoint, or started
//! again from scratch, never mistakes its epochs for another run's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::two_phase::{TwoPhaseCommitSink, TwoPhaseCommitWriter};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::run_id::writer_run_id;

use super::sink::{EncodedRecord, SinkSettings};

/// One subtask's records of one checkpoint, waiting for their commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaTransaction {
    /// The producer's transactional id (per sink subtask).
    pub transactional_id: String,
    /// The run of the writer that prepared it.
    pub lineage: u64,
    /// The checkpoint it belongs to.
    pub epoch: u64,
    /// The records, encoded.
    pub records: Vec<EncodedRecord>,
}

impl KafkaTransaction {
    /// The consumer group whose committed offset marks the epochs of this
    /// writer run that are written.
    fn marker_group(&self) -> String {
        format!("{}-{:016x}", self.transactional_id, self.lineage)
    }

    /// The epoch as a marker offset (the end-of-input epoch is the largest).
    fn marker(&self) -> i64 {
        i64::try_from(self.epoch).unwrap_or(i64::MAX)
    }
}

/// A transactional producer and the marker reader of one transactional id.
struct Committer {
    producer: ThreadedProducer<DefaultProducerContext>,
    /// The marker reader of the writer run committed last, and its group:
    /// a restored job commits its restored committables first, then only
    /// its own, so one reader at a time is enough.
    marker: Option<(String, BaseConsumer)>,
}

/// The exactly-once Kafka sink; made by [`KafkaSink::exactly_once`](super::KafkaSink::exactly_once).
pub struct TransactionalKafkaSink<T> {
    settings: Arc<SinkSettings<T>>,
    /// One committer per transactional id; commits of one id never overlap.
    committers: Mutex<HashMap<String, Committer>>,
}

impl<T: Data> TransactionalKafkaSink<T> {
    pub(crate) fn new(settings: Arc<SinkSettings<T>>) -> Self {
        TransactionalKafkaSink {
            settings,
            committers: Mutex::new(HashMap::new()),
        }
    }

    fn committer(&self, transactional_id: &str) -> Result<Committer, BoxError> {
        let s = &self.settings;
        let mut config = s.producer_config(transactional_id);
        config
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "60000");
        let producer: ThreadedProducer<DefaultProducerContext> = config
            .create()
            .map_err(|e| s.error(format!("cannot create a transactional producer: {e}")))?;
        // Fences an older producer of this id and settles the transaction
        // it may have left open.
        producer.init_transactions(s.timeout).map_err(|e| {
            s.error(format!(
                "cannot initialise transactions for {transactional_id} within {:?}: {e}",
                s.timeout
            ))
        })?;
        Ok(Committer {
            producer,
            marker: None,
        })
    }

    /// The marker reader of the run of `txn`.
    fn marker_reader<'c>(
        &self,
        committer: &'c mut Committer,
        txn: &KafkaTransaction,
    ) -> Result<&'c BaseConsumer, BoxError> {
        let s = &self.settings;
        let group = txn.marker_group();
        if committer.marker.as_ref().is_none_or(|(g, _)| *g != group) {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &s.bootstrap)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("log_level", "4")
                .create()
                .map_err(|e| s.error(format!("cannot create the marker reader: {e}")))?;
            committer.marker = Some((group, consumer));
        }
        match &committer.marker {
            Some((_, consumer)) => Ok(consumer),
            None => Err(s.error("no marker reader".into()).into()),
        }
    }

    /// The newest epoch written by the run of `txn`, read from its marker.
    fn written_epoch(
        &self,
        reader: &BaseConsumer,
        txn: &KafkaTransaction,
    ) -> Result<i64, BoxError> {
        let s = &self.settings;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&s.topic, 0);
        let committed = reader.committed_offsets(tpl, s.timeout).map_err(|e| {
            s.error(format!(
                "cannot read the epoch marker of {}: {e}",
                txn.marker_group()
            ))
        })?;
        Ok(
            match committed.find_partition(&s.topic, 0).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n,
                _ => -1,
            },
        )
    }

    /// Writes `txn` in one transaction with its marker, unless its marker
    /// says it is written already.
    fn write_once(
        &self,
        committer: &mut Committer,
        txn: &KafkaTransaction,
    ) -> Result<(), BoxError> {
        let s = &self.settings;
        let reader = self.marker_reader(committer, txn)?;
        if self.written_epoch(reader, txn)? >= txn.marker() {
            return Ok(());
        }
        let group = reader
            .group_metadata()
            .ok_or_else(|| s.error("the marker reader has no group metadata".into()))?;
        let producer = &committer.producer;
        producer.begin_transaction()?;
        for record in &txn.records {
            s.send(producer, record)?;
        }
        let mut marker = TopicPartitionList::new();
        marker.add_partition_offset(&s.topic, 0, Offset::Offset(txn.marker()))?;
        producer.send_offsets_to_transaction(&marker, &group, s.timeout)?;
        producer.commit_transaction(s.timeout)?;
        Ok(())
    }
}

impl<T: Data> TwoPhaseCommitSink for TransactionalKafkaSink<T> {
    type In = T;
    type Committable = KafkaTransaction;
    type Writer = TransactionalKafkaWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        let prefix = self
            .settings
            .transactional_prefix
            .clone()
            .unwrap_or_else(|| format!("eddy-{}-{}", ctx.job(), ctx.uid()));
        Ok(TransactionalKafkaWriter {
            settings: Arc::clone(&self.settings),
            transactional_id: format!("{prefix}-{}", ctx.subtask()),
            lineage: writer_run_id(ctx),
            records: Vec::new(),
        })
    }

    fn commit(&self, txn: &KafkaTransaction) -> Result<(), BoxError> {
        let mut committers = self.committers.lock().map_err(|_| "committers poisoned")?;
        let mut committer = match committers.remove(&txn.transactional_id) {
            Some(c) => c,
            None => self.committer(&txn.transactional_id)?,
        };
        match self.write_once(&mut committer, txn) {
            Ok(()) => {
                committers.insert(txn.transactional_id.clone(), committer);
                Ok(())
            }
            Err(e) => {
                // The committer is dropped: the retry after the restart
                // starts with a fresh producer, which aborts this attempt.
                let _ = committer.producer.abort_transaction(self.settings.timeout);
                Err(self
                    .settings
                    .error(format!(
                        "committing checkpoint {} of {} failed: {e}",
                        txn.epoch, txn.transactional_id
                    ))
                    .into())
            }
        }
    }
}

/// The writer of one exactly-once Kafka sink subtask: it collects the
/// encoded records of the current checkpoint.
pub struct TransactionalKafkaWriter<T> {
    settings: Arc<SinkSettings<T>>,
    transactional_id: String,
    lineage: u64,
    records: Vec<EncodedRecord>,
}

impl<T: Data> TwoPhaseCommitWriter for TransactionalKafkaWriter<T> {
    type In = T;
    type Committable = KafkaTransaction;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            self.records.push(self.settings.encode(&record)?);
        }
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<KafkaTransaction>, BoxError> {
        if self.records.is_empty() {
            return Ok(None);
        }
        Ok(Some(KafkaTransaction {
            transactional_id: self.transactional_id.clone(),
            lineage: self.lineage,
            epoch: id.0,
            records: std::mem::take(&mut self.records),
        }))
    }
}
