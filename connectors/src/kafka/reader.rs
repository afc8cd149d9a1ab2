//! [`KafkaReader`]: one consumer per source subtask, assigned its
//! partitions explicitly (no group rebalancing), polled without blocking.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Data, Timestamp};
use eddy_engine::error::BoxError;
use eddy_engine::metrics::{Gauge, MetricGroup};
use eddy_engine::source::{ReadStatus, SourceOutput, SourceReader};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::lag::{EndOffsets, STATISTICS_INTERVAL_MS};
use super::record::Decoder;
use super::source::KafkaSettings;
use super::split::{reset, KafkaSplit, StartAt};
use crate::error::ConnectorError;
use crate::format::decode::Decoded;
use crate::format::Format;

/// How often a reader updates its partitions' lag.
const LAG_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// Where one assigned partition stands.
#[derive(Debug)]
struct Partition {
    topic: String,
    partition: i32,
    /// The next offset to read; `None`: the earliest, nothing read yet.
    next: Option<i64>,
    stop: Option<i64>,
    finished: bool,
    /// Records between `next` and the partition's end, as last known.
    lag: Gauge,
}

impl Partition {
    fn at_stop(&self) -> bool {
        matches!((self.next, self.stop), (Some(n), Some(s)) if n >= s) || (self.stop == Some(0))
    }

    fn snapshot(&self) -> KafkaSplit {
        KafkaSplit {
            topic: self.topic.clone(),
            partition: self.partition,
            start: self.next.map_or(StartAt::Earliest, StartAt::Offset),
            stop: self.stop,
        }
    }
}

/// Reads the partitions assigned to one subtask.
pub struct KafkaReader<O> {
    consumer: BaseConsumer<EndOffsets>,
    settings: KafkaSettings,
    decoder: Decoder<O>,
    format: Format,
    partitions: Vec<Partition>,
    /// `topic → partition → index in partitions`, for messages.
    index: HashMap<String, HashMap<i32, usize>>,
    /// The offsets of the newest snapshot, committed to the group when a
    /// checkpoint completes.
    last_snapshot: RefCell<Option<TopicPartitionList>>,
    metrics: MetricGroup,
    /// When the partitions' lag is next updated.
    next_lag_update: Instant,
}

impl<O: Data> KafkaReader<O> {
    pub(crate) fn new(
        settings: &KafkaSettings,
        decoder: Decoder<O>,
        ctx: &RuntimeContext,
    ) -> Result<Self, ConnectorError> {
        let mut config = settings.client_config();
        if settings.group_id.is_none() {
            // librdkafka assigns partitions only in a consumer that has a
            // group; without the user's, a private one that never
            // subscribes (so never rebalances) and never commits.
            config.set("group.id", format!("eddy-{}-{}", ctx.job(), ctx.uid()));
        }
        config.set(
            "client.id",
            format!("eddy-{}-{}-{}", ctx.job(), ctx.operator(), ctx.subtask()),
        );
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        let consumer = config
            .create_with_context(EndOffsets::default())
            .map_err(|e| settings.unreachable("creating a consumer", e))?;
        Ok(KafkaReader {
            consumer,
            settings: settings.clone(),
            decoder,
            format: settings.format,
            partitions: Vec::new(),
            index: HashMap::new(),
            last_snapshot: RefCell::new(None),
            metrics: ctx.metrics().clone(),
            next_lag_update: Instant::now(),
        })
    }

    /// Sets each partition's lag gauge from the end offset librdkafka's
    /// statistics last reported (no request to the broker), once per
    /// [`LAG_UPDATE_INTERVAL`].
    fn update_lag(&mut self) {
        let now = Instant::now();
        if now < self.next_lag_update {
            return;
        }
        self.next_lag_update = now + LAG_UPDATE_INTERVAL;
        let ends = self.consumer.context();
        for p in &self.partitions {
            let Some(high) = ends.of(&p.topic, p.partition) else {
                continue; // not reported before the first fetch
            };
            let end = p.stop.map_or(high, |s| high.min(s));
            p.lag.set((end - p.next.unwrap_or(0)).max(0));
        }
    }

    /// The concrete next offset for `start` (`None`: the earliest).
    fn resolve(
        &self,
        topic: &str,
        partition: i32,
        start: &StartAt,
    ) -> Result<Option<i64>, ConnectorError> {
        let timeout = self.settings.timeout;
        let high = || {
            self.consumer
                .fetch_watermarks(topic, partition, timeout)
                .map(|(_, high)| Some(high))
                .map_err(|e| self.settings.unreachable("reading the end offsets", e))
        };
        match start {
            StartAt::Offset(o) => Ok(Some(*o)),
            StartAt::Earliest => Ok(None),
            StartAt::Latest => high(),
            StartAt::Timestamp(ts) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(*ts))
                    .map_err(|e| self.settings.unreachable("looking up offsets by time", e))?;
                let found = self
                    .consumer
                    .offsets_for_times(tpl, timeout)
                    .map_err(|e| self.settings.unreachable("looking up offsets by time", e))?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Ok(Some(o)),
                    _ => high(),
                }
            }
            StartAt::Committed(policy) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, partition);
                let committed = self.consumer.committed_offsets(tpl, timeout).map_err(|e| {
                    self.settings
                        .unreachable("reading the committed offsets", e)
                })?;
                match committed
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => Ok(Some(o)),
                    _ => self.resolve(topic, partition, &reset(*policy)),
                }
            }
        }
    }

    /// Assigns every partition still to read, each at its next offset
    /// (`assign`, not `incremental_assign`: the latter needs a group).
    fn assign(&self) -> Result<(), BoxError> {
        let mut tpl = TopicPartitionList::new();
        for p in self
            .partitions
            .iter()
            .filter(|p| !p.finished && !p.at_stop())
        {
            let offset = p.next.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&p.topic, p.partition, offset)?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| self.settings.unreachable("assigning partitions", e))?;
        Ok(())
    }

    fn all_finished(&self) -> bool {
        self.partitions.iter().all(|p| p.finished)
    }

    /// Stops fetching a partition that reached its stopping offset.
    fn finish(&mut self, i: usize, out: &mut SourceOutput<'_, O>) {
        let p = &mut self.partitions[i];
        p.finished = true;
        out.finish_split(i);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.topic, p.partition);
        // Only a fetch saving: records past the stop are ignored anyway.
        let _ = self.consumer.pause(&tpl);
    }
}

impl<O: Data> SourceReader for KafkaReader<O> {
    type Out = O;
    type Split = KafkaSplit;

    fn add_splits(&mut self, splits: Vec<KafkaSplit>) -> Result<(), BoxError> {
        if splits.is_empty() {
            return Ok(());
        }
        for split in splits {
            let next = self.resolve(&split.topic, split.partition, &split.start)?;
            let i = self.partitions.len();
            self.index
                .entry(split.topic.clone())
                .or_default()
                .insert(split.partition, i);
            let lag = self
                .metrics
                .with_labels(&[
                    ("topic", &split.topic),
                    ("partition", &split.partition.to_string()),
                ])
                .gauge(
                    "kafka_partition_lag",
                    "Records between the next offset to read and the end of the partition.",
                );
            self.partitions.push(Partition {
                topic: split.topic,
                partition: split.partition,
                next,
                stop: split.stop,
                finished: false,
                lag,
            });
        }
        self.assign()
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, O>) -> Result<ReadStatus, BoxError> {
        self.update_lag();
        for i in 0..self.partitions.len() {
            if !self.partitions[i].finished && self.partitions[i].at_stop() {
                self.finish(i, out);
            }
        }
        if self.all_finished() {
            return Ok(ReadStatus::Finished);
        }
        let mut read = 0;
        while read < out.room() {
            let message = match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // librdkafka reports transient trouble (a broker that
                    // went away) here and recovers by itself.
                    tracing::debug!(error = %e, "Kafka consumer");
                    break;
                }
            };
            let Some(&i) = self
                .index
                .get(message.topic())
                .and_then(|t| t.get(&message.partition()))
            else {
                continue;
            };
            let p = &mut self.partitions[i];
            let offset = message.offset();
            if p.finished
                || p.next.is_some_and(|n| offset < n)
                || p.stop.is_some_and(|s| offset >= s)
            {
                continue;
            }
            p.next = Some(offset + 1);
            read += 1;
            match (self.decoder)(&message, self.format) {
                Decoded::Value(value) => match message.timestamp().to_millis() {
                    Some(ts) => out.emit_at(i, value, Timestamp(ts)),
                    None => out.emit(i, value),
                },
                Decoded::Blank => {}
                Decoded::Invalid(reason) => out.dead_letter(
                    i,
                    format!("offset {offset}"),
                    format!("cannot decode {}: {reason}", self.format.name()),
                    String::from_utf8_lossy(message.payload().unwrap_or_default()),
                ),
            }
            if self.partitions[i].at_stop() {
                drop(message);
                self.finish(i, out);
            }
        }
        Ok(if read > 0 {
            ReadStatus::MoreAvailable
        } else if self.all_finished() {
            ReadStatus::Finished
        } else {
            ReadStatus::NothingAvailable
        })
    }

    fn snapshot_splits(&self) -> Vec<KafkaSplit> {
        let mut offsets = TopicPartitionList::new();
        let open: Vec<KafkaSplit> = self
            .partitions
            .iter()
            .filter(|p| !p.finished && !p.at_stop())
            .map(Partition::snapshot)
            .collect();
        for p in &self.partitions {
            if let Some(next) = p.next {
                let _ = offsets.add_partition_offset(&p.topic, p.partition, Offset::Offset(next));
            }
        }
        *self.last_snapshot.borrow_mut() = Some(offsets);
        open
    }

    fn notify_checkpoint_complete(&mut self, _id: CheckpointId) -> Result<(), BoxError> {
        if self.settings.group_id.is_none() {
            return Ok(());
        }
        if let Some(offsets) = self.last_snapshot.borrow_mut().take() {
            if offsets.count() > 0 {
                // For lag monitoring only; a failure must not fail the job.
                if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                    tracing::warn!(error = %e, "committing offsets to the consumer group failed");
                }
            }
        }
        Ok(())
    }
}
