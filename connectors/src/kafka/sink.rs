//! [`KafkaSink`]: writes records to a topic. As it is, at least once: every
//! checkpoint barrier waits until the brokers have acknowledged everything
//! written before it. [`KafkaSink::exactly_once`] makes it the
//! transactional sink of [`super::transactional`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_engine::checkpoint::StateSnapshot;
use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record, Timestamp};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};
use eddy_engine::two_phase::ExactlyOnce;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::transactional::TransactionalKafkaSink;
use crate::error::ConnectorError;

/// How a record becomes the bytes of a Kafka value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueEncoding {
    /// JSON (default).
    #[default]
    Json,
    /// bincode: compact, for Eddy-to-Eddy topics.
    Bincode,
    /// The value itself, for records that are a `String` (its UTF-8 bytes)
    /// or a byte vector; any other record fails the job, naming the type.
    Raw,
}

/// The bytes of a `String` or byte-vector record, for [`ValueEncoding::Raw`].
fn raw_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, BoxError> {
    match serde_json::to_value(value)? {
        serde_json::Value::String(s) => Ok(s.into_bytes()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| "ValueEncoding::Raw: a list that is not bytes".into()),
        other => Err(format!(
            "ValueEncoding::Raw writes strings and bytes only, not {} ({}); use Json or Bincode",
            std::any::type_name::<T>(),
            match other {
                serde_json::Value::Object(_) => "a struct or map",
                serde_json::Value::Number(_) => "a number",
                _ => "this value",
            }
        )
        .into()),
    }
}

type KeyFn<T> = Arc<dyn Fn(&T) -> Option<Vec<u8>> + Send + Sync>;
type HeadersFn<T> = Arc<dyn Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync>;

/// Where and how a sink writes; shared by both guarantees.
#[derive(Clone)]
pub(crate) struct SinkSettings<T> {
    pub bootstrap: String,
    pub topic: String,
    encoding: ValueEncoding,
    key: Option<KeyFn<T>>,
    headers: Option<HeadersFn<T>>,
    pub timeout: Duration,
    properties: Vec<(String, String)>,
    pub transactional_prefix: Option<String>,
}

/// One record, encoded, as the producer sends it (and as an exactly-once
/// sink keeps it in its checkpoint until the commit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedRecord {
    key: Option<ByteBuf>,
    payload: ByteBuf,
    timestamp: Option<i64>,
    headers: Vec<(String, ByteBuf)>,
}

impl<T: Data> SinkSettings<T> {
    /// Encodes a record with the sink's key, headers and value encoding.
    pub(crate) fn encode(&self, record: &Record<T>) -> Result<EncodedRecord, BoxError> {
        let value = &record.value;
        let payload = match self.encoding {
            ValueEncoding::Json => serde_json::to_vec(value)?,
            ValueEncoding::Bincode => bincode::serialize(value)?,
            ValueEncoding::Raw => raw_bytes(value)?,
        };
        Ok(EncodedRecord {
            key: self.key.as_ref().and_then(|k| k(value)).map(ByteBuf::from),
            payload: ByteBuf::from(payload),
            timestamp: (record.ts > Timestamp::MIN).then(|| record.ts.millis()),
            headers: self
                .headers
                .as_ref()
                .map(|h| {
                    h(value)
                        .into_iter()
                        .map(|(k, v)| (k, ByteBuf::from(v)))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The producer configuration, with client id `client`.
    pub(crate) fn producer_config(&self, client: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("client.id", client)
            .set("log_level", "4");
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// An error naming the brokers.
    pub(crate) fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::Kafka {
            bootstrap: self.bootstrap.clone(),
            reason,
        }
    }

    /// Hands `record` to the producer's queue, waiting while it is full.
    pub(crate) fn send<C: ProducerContext<DeliveryOpaque = ()>>(
        &self,
        producer: &ThreadedProducer<C>,
        record: &EncodedRecord,
    ) -> Result<(), BoxError> {
        let headers = (!record.headers.is_empty()).then(|| {
            record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |all, (k, v)| {
                    all.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    })
                })
        });
        let mut message =
            BaseRecord::<[u8], [u8]>::to(&self.topic).payload(record.payload.as_slice());
        if let Some(key) = &record.key {
            message = message.key(key.as_slice());
        }
        if let Some(headers) = headers {
            message = message.headers(headers);
        }
        if let Some(ts) = record.timestamp {
            message = message.timestamp(ts);
        }
        loop {
            match producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                    // Backpressure: the local queue drains as acks come.
                    message = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(self
                        .error(format!("cannot send to topic {}: {e}", self.topic))
                        .into())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_encoding_takes_strings_and_bytes_and_names_anything_else() {
        assert_eq!(
            raw_bytes(&"héllo".to_owned()).ok(),
            Some("héllo".as_bytes().to_vec())
        );
        assert_eq!(raw_bytes(&vec![0u8, 255, 7]).ok(), Some(vec![0, 255, 7]));
        let err = raw_bytes(&(1u32, 300u32)).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not bytes")));
        let err = raw_bytes(&5u64).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("u64") && e.contains("Json or Bincode")));
    }
}

/// The client id of a sink subtask's producer.
pub(crate) fn client_id(ctx: &RuntimeContext) -> String {
    format!("eddy-{}-{}-{}", ctx.job(), ctx.operator(), ctx.subtask())
}

/// A sink writing each record to one topic. Records with a key go to the
/// partition of their key (Kafka's default partitioner).
///
/// As built, it writes at least once, through the idempotent producer (no
/// duplicates from the producer's own retries; a job restarted from a
/// checkpoint writes again what it wrote after that checkpoint). Call
/// [`exactly_once`](Self::exactly_once) for transactions.
pub struct KafkaSink<T> {
    settings: Arc<SinkSettings<T>>,
}

impl<T: Data> KafkaSink<T> {
    /// Writes to `topic` on the brokers at `bootstrap`, at least once.
    pub fn at_least_once(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        KafkaSink {
            settings: Arc::new(SinkSettings {
                bootstrap: bootstrap.into(),
                topic: topic.into(),
                encoding: ValueEncoding::Json,
                key: None,
                headers: None,
                timeout: Duration::from_secs(30),
                properties: Vec::new(),
                transactional_prefix: None,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut SinkSettings<T>)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// How values are encoded (default JSON).
    pub fn encoding(self, encoding: ValueEncoding) -> Self {
        self.with(|s| s.encoding = encoding)
    }

    /// The key of each record (and so its partition).
    pub fn key(self, key: impl Fn(&T) -> Option<Vec<u8>> + Send + Sync + 'static) -> Self {
        self.with(|s| s.key = Some(Arc::new(key)))
    }

    /// Headers for each record.
    pub fn headers(
        self,
        headers: impl Fn(&T) -> Vec<(String, Vec<u8>)> + Send + Sync + 'static,
    ) -> Self {
        self.with(|s| s.headers = Some(Arc::new(headers)))
    }

    /// How long a flush or a commit waits for the brokers before the job
    /// fails (default 30 s).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|s| s.timeout = timeout)
    }

    /// Any other librdkafka producer property (e.g. `compression.type`).
    pub fn property(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        self.with(|s| s.properties.push((key, value)))
    }

    /// Exactly-once: the prefix of the transactional ids (one per subtask;
    /// default `eddy-<job>-<sink uid>`). Two jobs writing at the same time
    /// must not share one.
    pub fn transactional_id_prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.with(|s| s.transactional_prefix = Some(prefix))
    }

    /// The exactly-once sink writing where this one would: each
    /// checkpoint's records are committed in one Kafka transaction when the
    /// checkpoint completes (see `docs/kafka.md`).
    pub fn exactly_once(self) -> ExactlyOnce<TransactionalKafkaSink<T>> {
        ExactlyOnce::new(self.transactional())
    }

    /// The two-phase-commit sink under [`exactly_once`](Self::exactly_once),
    /// for tests and custom adapters.
    pub fn transactional(self) -> TransactionalKafkaSink<T> {
        TransactionalKafkaSink::new(self.settings)
    }
}

/// Remembers the first failed delivery, reported at the next barrier.
#[derive(Default)]
pub struct DeliveryErrors {
    first: Mutex<Option<String>>,
}

impl DeliveryErrors {
    /// The first failure since the last call, if any.
    fn take(&self) -> Option<String> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

impl<T: Data> Sink for KafkaSink<T> {
    type In = T;
    type Writer = KafkaWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<KafkaWriter<T>, BoxError> {
        let producer: ThreadedProducer<DeliveryErrors> = self
            .settings
            .producer_config(&client_id(ctx))
            .create_with_context(DeliveryErrors::default())
            .map_err(|e| {
                self.settings
                    .error(format!("cannot create a producer: {e}"))
            })?;
        Ok(KafkaWriter {
            producer,
            settings: Arc::clone(&self.settings),
        })
    }
}

/// The writer of one at-least-once [`KafkaSink`] subtask.
pub struct KafkaWriter<T> {
    producer: ThreadedProducer<DeliveryErrors>,
    settings: Arc<SinkSettings<T>>,
}

impl<T: Data> KafkaWriter<T> {
    /// Waits until every record sent so far is acknowledged; fails with the
    /// first delivery error.
    fn flush(&self) -> Result<(), BoxError> {
        let s = &self.settings;
        self.producer.flush(s.timeout).map_err(|e| {
            s.error(format!(
                "records were not acknowledged within {:?} ({e}); check that the brokers are up",
                s.timeout
            ))
        })?;
        match self.producer.context().take() {
            Some(reason) => Err(s
                .error(format!("writing to topic {} failed: {reason}", s.topic))
                .into()),
            None => Ok(()),
        }
    }
}

impl<T: Data> SinkWriter for KafkaWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            let encoded = self.settings.encode(&record)?;
            self.settings.send(&self.producer, &encoded)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _out: &mut StateSnapshot) -> Result<(), BoxError> {
        self.flush()
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.flush()
    }
}
