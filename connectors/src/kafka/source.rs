//! [`KafkaSource`]: its builder, and the enumerator that lists the
//! partitions of the subscribed topics.

use std::marker::PhantomData;
use std::time::Duration;

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::Data;
use eddy_engine::error::BoxError;
use eddy_engine::source::{Boundedness, Source, SplitEnumerator};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use regex::Regex;
use serde::de::DeserializeOwned;

use super::reader::KafkaReader;
use super::record::{decode_value, decode_with_metadata, Decoder, KafkaRecord};
use super::split::{KafkaSplit, StartAt, StartingOffsets};
use crate::error::ConnectorError;
use crate::format::Format;

/// Which topics a source reads.
#[derive(Clone, Debug)]
enum Topics {
    Names(Vec<String>),
    Pattern(Regex),
}

/// Where a bounded source stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoppingOffsets {
    /// Before these offsets per `(topic, partition)` (exclusive); partitions
    /// not listed are read up to their end as seen when the job starts.
    Offsets(std::collections::HashMap<(String, i32), i64>),
    /// Each partition's end (high watermark) as seen when the job starts.
    /// Only as right as the broker's answer (see docs/connectors.md).
    Latest,
}

/// Settings shared by the enumerator and the readers.
#[derive(Clone, Debug)]
pub(crate) struct KafkaSettings {
    pub bootstrap: String,
    pub group_id: Option<String>,
    pub format: Format,
    pub starting: StartingOffsets,
    pub stopping: Option<StoppingOffsets>,
    pub timeout: Duration,
    pub max_queued_kbytes: usize,
    pub properties: Vec<(String, String)>,
}

impl KafkaSettings {
    /// The client configuration every consumer starts from.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "queued.max.messages.kbytes",
                self.max_queued_kbytes.to_string(),
            )
            .set("socket.timeout.ms", self.timeout.as_millis().to_string())
            // A reader polls without blocking and leaves librdkafka's queue
            // to fill up; when it is full, fetching backs off for this long
            // (librdkafka's default, 1 s, costs a third of the throughput).
            .set("fetch.queue.backoff.ms", "10")
            // Brokers that hold a fetch for its whole wait (Tansu) would add
            // this much latency (Kafka's default is 500 ms).
            .set("fetch.wait.max.ms", "100")
            .set("log_level", "4");
        if let Some(group) = &self.group_id {
            config.set("group.id", group);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// The error for a broker that did not answer in time.
    pub(crate) fn unreachable(&self, what: &str, e: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Kafka {
            bootstrap: self.bootstrap.clone(),
            reason: format!(
                "{what} failed within {:?}: {e}; check that the bootstrap servers are right and the brokers are up (the wait is KafkaSourceBuilder::timeout)",
                self.timeout
            ),
        }
    }
}

/// Builds a [`KafkaSource`]; start with [`KafkaSource::builder`].
#[derive(Clone, Debug)]
pub struct KafkaSourceBuilder<T> {
    settings: KafkaSettings,
    topics: Option<Topics>,
    discovery: Option<Duration>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Data + DeserializeOwned + Sync> KafkaSourceBuilder<T> {
    /// Reads these topics.
    pub fn topics<I, S>(mut self, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.topics = Some(Topics::Names(topics.into_iter().map(Into::into).collect()));
        self
    }

    /// Reads every topic whose whole name matches `pattern` (a regular
    /// expression), also topics created while the job runs.
    pub fn topic_pattern(mut self, pattern: &str) -> Result<Self, ConnectorError> {
        let anchored = format!("^(?:{pattern})$");
        let regex = Regex::new(&anchored).map_err(|e| ConnectorError::InvalidConfig {
            option: "KafkaSourceBuilder::topic_pattern",
            value: pattern.to_owned(),
            reason: e.to_string(),
        })?;
        self.topics = Some(Topics::Pattern(regex));
        Ok(self)
    }

    /// The consumer group: its committed offsets can be the start, and the
    /// checkpointed offsets are committed to it (for lag monitoring only:
    /// a restored job resumes from its checkpoint, not from the group).
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.settings.group_id = Some(group.into());
        self
    }

    /// Where a fresh job starts (default: earliest). Partitions discovered
    /// while the job runs start at their earliest offset, as in Flink.
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.settings.starting = starting;
        self
    }

    /// Makes the source bounded: each partition is read up to its stopping
    /// offset and the job ends when all are (no discovery of new partitions).
    pub fn bounded(mut self, stopping: StoppingOffsets) -> Self {
        self.settings.stopping = Some(stopping);
        self
    }

    /// How messages decode (default JSON).
    pub fn format(mut self, format: Format) -> Self {
        self.settings.format = format;
        self
    }

    /// How often an unbounded source looks for new partitions and topics
    /// (default 30 s; `Duration::ZERO` turns discovery off).
    pub fn discovery_interval(mut self, every: Duration) -> Self {
        self.discovery = (!every.is_zero()).then_some(every);
        self
    }

    /// How long a metadata or offset request may take before the source
    /// fails, naming the bootstrap servers (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The most fetched but unread data each reader keeps queued, in KiB
    /// (default 16 MiB): when the job is slow, fetching pauses at this.
    pub fn max_queued_kbytes(mut self, kbytes: usize) -> Self {
        self.settings.max_queued_kbytes = kbytes.max(1);
        self
    }

    /// Any other librdkafka consumer property (e.g. `isolation.level`).
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.properties.push((key.into(), value.into()));
        self
    }

    /// The source of decoded values.
    ///
    /// # Errors
    /// When no topics were given, or committed offsets were asked for
    /// without a group id.
    pub fn build(self) -> Result<KafkaSource<T>, ConnectorError> {
        self.finish(decode_value::<T>)
    }

    /// The source of values with their key, headers, topic, partition,
    /// offset and timestamp.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_with_metadata(self) -> Result<KafkaSource<KafkaRecord<T>>, ConnectorError> {
        self.finish(decode_with_metadata::<T>)
    }

    fn finish<O>(self, decoder: Decoder<O>) -> Result<KafkaSource<O>, ConnectorError> {
        let topics = self.topics.ok_or(ConnectorError::InvalidConfig {
            option: "KafkaSourceBuilder::topics",
            value: "none".into(),
            reason: "a Kafka source needs .topics([..]) or .topic_pattern(..)".into(),
        })?;
        if matches!(self.settings.starting, StartingOffsets::Committed { .. })
            && self.settings.group_id.is_none()
        {
            return Err(ConnectorError::InvalidConfig {
                option: "KafkaSourceBuilder::starting_offsets",
                value: "Committed".into(),
                reason: "starting at committed offsets needs a group id: add .group_id(..)".into(),
            });
        }
        let discovery = match self.settings.stopping {
            Some(_) => None,
            None => self.discovery,
        };
        Ok(KafkaSource {
            settings: self.settings,
            topics,
            discovery,
            decoder,
        })
    }
}

/// A source of records from Kafka topics: each partition is a split, its
/// next offset is kept in Eddy's checkpoints and restored exactly.
pub struct KafkaSource<O> {
    settings: KafkaSettings,
    topics: Topics,
    discovery: Option<Duration>,
    decoder: Decoder<O>,
}

impl<T: Data + DeserializeOwned + Sync> KafkaSource<T> {
    /// A builder for a source reading from the brokers at `bootstrap`
    /// (`host:port[,host:port…]`).
    pub fn builder(bootstrap: impl Into<String>) -> KafkaSourceBuilder<T> {
        KafkaSourceBuilder {
            settings: KafkaSettings {
                bootstrap: bootstrap.into(),
                group_id: None,
                format: Format::Json,
                starting: StartingOffsets::Earliest,
                stopping: None,
                timeout: Duration::from_secs(10),
                max_queued_kbytes: 16 * 1024,
                properties: Vec::new(),
            },
            topics: None,
            discovery: Some(Duration::from_secs(30)),
            _type: PhantomData,
        }
    }
}

impl<O: Data> Source for KafkaSource<O> {
    type Out = O;
    type Split = KafkaSplit;
    type Reader = KafkaReader<O>;

    fn boundedness(&self) -> Boundedness {
        match self.settings.stopping {
            Some(_) => Boundedness::Bounded,
            None => Boundedness::Unbounded,
        }
    }

    fn create_enumerator(
        &self,
        _parallelism: usize,
    ) -> Result<Box<dyn SplitEnumerator<KafkaSplit>>, BoxError> {
        let consumer: BaseConsumer = self.settings.client_config().create()?;
        Ok(Box::new(PartitionEnumerator {
            consumer,
            settings: self.settings.clone(),
            topics: self.topics.clone(),
            discovery: self.discovery,
            first: true,
        }))
    }

    fn create_reader(&self, ctx: &RuntimeContext) -> Result<KafkaReader<O>, BoxError> {
        Ok(KafkaReader::new(&self.settings, self.decoder, ctx)?)
    }
}

/// Lists the partitions of the source's topics from the cluster metadata.
struct PartitionEnumerator {
    consumer: BaseConsumer,
    settings: KafkaSettings,
    topics: Topics,
    discovery: Option<Duration>,
    /// The first discovery uses the configured starting offsets; later
    /// ones find partitions that are new, which start at their earliest.
    first: bool,
}

impl PartitionEnumerator {
    fn stop_of(&self, topic: &str, partition: i32) -> Result<Option<i64>, ConnectorError> {
        let listed = match &self.settings.stopping {
            None => return Ok(None),
            Some(StoppingOffsets::Offsets(map)) => map.get(&(topic.to_owned(), partition)),
            Some(StoppingOffsets::Latest) => None,
        };
        if let Some(&stop) = listed {
            return Ok(Some(stop));
        }
        let (_, high) = self
            .consumer
            .fetch_watermarks(topic, partition, self.settings.timeout)
            .map_err(|e| self.settings.unreachable("reading the end offsets", e))?;
        Ok(Some(high))
    }
}

impl SplitEnumerator<KafkaSplit> for PartitionEnumerator {
    fn discover(&mut self) -> Result<Vec<KafkaSplit>, BoxError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, self.settings.timeout)
            .map_err(|e| {
                self.settings
                    .unreachable("fetching the cluster metadata", e)
            })?;
        let present = |name: &str| {
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none())
        };
        if let (true, Topics::Names(names)) = (self.first, &self.topics) {
            let missing: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !present(n))
                .collect();
            if !missing.is_empty() {
                return Err(ConnectorError::Kafka {
                    bootstrap: self.settings.bootstrap.clone(),
                    reason: format!(
                        "topic {} does not exist; create it first (or read a pattern)",
                        missing.join(", ")
                    ),
                }
                .into());
            }
        }
        let mut splits = Vec::new();
        for topic in metadata.topics().iter().filter(|t| t.error().is_none()) {
            let wanted = match &self.topics {
                Topics::Names(names) => names.iter().any(|n| n == topic.name()),
                Topics::Pattern(regex) => regex.is_match(topic.name()),
            };
            if !wanted {
                continue;
            }
            for p in topic.partitions() {
                let start = if self.first {
                    self.settings.starting.start_of(topic.name(), p.id())
                } else {
                    StartAt::Earliest
                };
                splits.push(KafkaSplit {
                    topic: topic.name().to_owned(),
                    partition: p.id(),
                    start,
                    stop: self.stop_of(topic.name(), p.id())?,
                });
            }
        }
        splits.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.first = false;
        Ok(splits)
    }

    fn discovery_interval(&self) -> Option<Duration> {
        self.discovery
    }
}
