//! Stream sources: a NATS JetStream subject read as a micro-batch through a durable pull
//! consumer. Messages are acknowledged one by one only by [`Received::acknowledge`], which the
//! runner calls after the batch's dataset and its run record are stored. A batch that fails
//! before that is given back (negative acknowledgement: redelivered at once); after a crash,
//! JetStream redelivers unacknowledged messages when their 30 s acknowledgement wait runs out.
//! At least once, never lost.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use futures::StreamExt;
use sluice_spec::kinds::{StreamStep, parse_duration};

use crate::database::interpolate_env;
use crate::error::{EngineError, Result};

/// A micro-batch: its rows, and the messages to acknowledge once they are stored.
pub struct Received {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pending: Vec<async_nats::jetstream::Message>,
    client: async_nats::Client,
}

impl Received {
    pub fn messages(&self) -> usize {
        self.pending.len()
    }

    /// Acknowledge every message of the batch, each on its own (so a batch that failed before
    /// it is never acknowledged by a later one), and wait until the server has them.
    pub async fn acknowledge(self) -> Result<()> {
        for m in &self.pending {
            m.ack().await.map_err(|e| EngineError::Invalid(format!("acknowledging: {e}")))?;
        }
        self.client.flush().await.map_err(|e| EngineError::Invalid(format!("acknowledging: {e}")))
    }

    /// Give the messages back for immediate redelivery (the batch could not be stored).
    pub async fn give_back(self) {
        for m in &self.pending {
            let _ = m.ack_with(async_nats::jetstream::AckKind::Nak(None)).await;
        }
        let _ = self.client.flush().await;
    }
}

fn nats_error(step: &StreamStep, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("NATS stream `{}` at `{}`: {e}", step.stream, step.nats))
}

/// Fetch up to `max_messages` (waiting at most `max_wait` for them) and decode the JSON payloads.
pub async fn read_stream(step: &StreamStep) -> Result<Received> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let url = interpolate_env(&step.nats)?;
    let options = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
    let client = options.connect(url.as_str()).await.map_err(|e| nats_error(step, e))?;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(&step.stream).await.map_err(|e| nats_error(step, e))?;
    let config = pull::Config {
        durable_name: Some(step.consumer.clone()),
        filter_subject: step.subject.clone().unwrap_or_default(),
        ack_policy: AckPolicy::Explicit,
        // Unacknowledged messages (a crashed run) come back after this long.
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let consumer = stream.get_or_create_consumer(&step.consumer, config).await.map_err(|e| nats_error(step, e))?;
    let wait = Duration::from_secs_f64(parse_duration(&step.max_wait).unwrap_or(2.0)).max(Duration::from_millis(10));
    let mut batch = consumer
        .batch()
        .max_messages(step.max_messages)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| nats_error(step, e))?;
    let mut payload = Vec::new();
    let mut pending = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.map_err(|e| nats_error(step, e))?;
        let body = &message.message.payload;
        if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body).is_err() {
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or_default();
            return Err(nats_error(
                step,
                format!(
                    "message {seq} on `{}` is not a JSON object: {}",
                    message.message.subject,
                    String::from_utf8_lossy(body)
                ),
            ));
        }
        payload.extend_from_slice(body);
        payload.push(b'\n');
        pending.push(message);
    }
    if pending.is_empty() {
        return Ok(Received { schema: Arc::new(Schema::empty()), batches: Vec::new(), pending, client });
    }
    let (schema, _) = arrow::json::reader::infer_json_schema(std::io::Cursor::new(&payload), None)
        .map_err(|e| nats_error(step, e))?;
    let schema = Arc::new(schema);
    let reader = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(8192)
        .build(std::io::Cursor::new(payload))
        .map_err(|e| nats_error(step, e))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| nats_error(step, e))?;
    Ok(Received { schema, batches, pending, client })
}
