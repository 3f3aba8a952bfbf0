//! Avro single-object encoding (`C3 01` + CRC-64-AVRO fingerprint + datum) for command
//! envelopes and registry events, using the schemas in `schemas/`.

use std::sync::{LazyLock, Mutex};

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::{GenericSingleObjectReader, GenericSingleObjectWriter, Schema};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DecodeError;
use crate::domain::command::{BundleTarget, Promote, PublishBundle, Rollback};
use crate::domain::{
    Actor, CatalogEntry, Command, CommandEnvelope, CommandType, ErrorCode, RegistryEvent, Timestamp,
};

/// The command envelope schema text.
pub const COMMAND_SCHEMA_JSON: &str = include_str!("../../schemas/command_envelope.avsc");
/// The registry event schema text.
pub const EVENT_SCHEMA_JSON: &str = include_str!("../../schemas/registry_event.avsc");

/// One schema with its named types resolved once: resolving them on every call cost more
/// than the encoding itself (39 % of the processor's CPU in `mpr_bench apply`).
struct Codec {
    header: Vec<u8>,
    writer: Mutex<GenericSingleObjectWriter>,
    reader: GenericSingleObjectReader,
}

impl Codec {
    fn new(text: &str) -> Self {
        let schema = Schema::parse_str(text).expect("bundled Avro schema parses");
        let header = RabinFingerprintHeader::from_schema(&schema).build_header();
        let writer = GenericSingleObjectWriter::new_with_capacity(&schema, 1024)
            .expect("bundled Avro schema resolves");
        let reader = GenericSingleObjectReader::new(schema).expect("bundled Avro schema resolves");
        Self {
            header,
            writer: Mutex::new(writer),
            reader,
        }
    }

    fn encode<T: Serialize>(&self, value: &T) -> Vec<u8> {
        let v = apache_avro::to_value(value).expect("domain values map to Avro");
        let mut out = Vec::with_capacity(1024);
        self.writer
            .lock()
            .expect("avro writer lock")
            .write_value_ref(&v, &mut out)
            .expect("domain values conform to the bundled schema");
        out
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<T, DecodeError> {
        if !is_framed(bytes) || bytes.len() < self.header.len() {
            return Err(DecodeError::new(
                ErrorCode::InvalidPayload,
                format!("{what} is not Avro single-object encoded"),
            ));
        }
        if bytes[..self.header.len()] != self.header[..] {
            return Err(DecodeError::new(
                ErrorCode::UnsupportedSchemaVersion,
                format!(
                    "{what} has unknown Avro schema fingerprint {}",
                    hex::encode(&bytes[2..self.header.len()])
                ),
            ));
        }
        let mut body = bytes;
        let value = self.reader.read_value(&mut body).map_err(|e| {
            DecodeError::new(
                ErrorCode::InvalidPayload,
                format!("{what} Avro datum is invalid: {e}"),
            )
        })?;
        if !body.is_empty() {
            return Err(DecodeError::new(
                ErrorCode::InvalidPayload,
                format!(
                    "{what} has {} trailing bytes after the Avro datum",
                    body.len()
                ),
            ));
        }
        apache_avro::from_value::<T>(&value).map_err(|e| {
            DecodeError::new(
                ErrorCode::InvalidPayload,
                format!("{what} does not fit the contract: {e}"),
            )
        })
    }
}

static COMMANDS: LazyLock<Codec> = LazyLock::new(|| Codec::new(COMMAND_SCHEMA_JSON));
static EVENTS: LazyLock<Codec> = LazyLock::new(|| Codec::new(EVENT_SCHEMA_JSON));

/// Whether `bytes` start with the single-object encoding marker `C3 01`.
pub fn is_framed(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0xC3 && bytes[1] == 0x01
}

/// The Avro shape of an envelope: one optional field per command body.
#[derive(Debug, Serialize, Deserialize)]
struct AvroEnvelope {
    command_id: Uuid,
    actor: Actor,
    submitted_at_utc: Timestamp,
    reason: Option<String>,
    command_type: CommandType,
    publish: Option<PublishBundle>,
    target: Option<BundleTarget>,
    promote: Option<Promote>,
    rollback: Option<Rollback>,
    catalog: Option<CatalogEntry>,
}

impl From<&CommandEnvelope> for AvroEnvelope {
    fn from(e: &CommandEnvelope) -> Self {
        let mut a = AvroEnvelope {
            command_id: e.command_id,
            actor: e.actor.clone(),
            submitted_at_utc: e.submitted_at_utc,
            reason: e.reason.clone(),
            command_type: e.command.command_type(),
            publish: None,
            target: None,
            promote: None,
            rollback: None,
            catalog: None,
        };
        match &e.command {
            Command::Publish(p) => a.publish = Some(p.clone()),
            Command::Nominate(t)
            | Command::Approve(t)
            | Command::Reject(t)
            | Command::Retire(t) => {
                a.target = Some(t.clone());
            }
            Command::Promote(p) => a.promote = Some(p.clone()),
            Command::Rollback(r) => a.rollback = Some(r.clone()),
            Command::SetCatalog(c) => a.catalog = Some(c.clone()),
        }
        a
    }
}

impl AvroEnvelope {
    fn into_envelope(self) -> Result<CommandEnvelope, DecodeError> {
        let id = self.command_id;
        let missing = |field: &str| DecodeError {
            code: ErrorCode::InvalidPayload,
            message: format!(
                "command_type {} requires field {field}",
                self.command_type.as_str()
            ),
            command_id: Some(id),
        };
        let set = [
            self.publish.is_some(),
            self.target.is_some(),
            self.promote.is_some(),
            self.rollback.is_some(),
            self.catalog.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(DecodeError {
                code: ErrorCode::InvalidPayload,
                message: "exactly one command body field must be set".into(),
                command_id: Some(id),
            });
        }
        let command = match self.command_type {
            CommandType::Publish => {
                Command::Publish(self.publish.ok_or_else(|| missing("publish"))?)
            }
            CommandType::Nominate => {
                Command::Nominate(self.target.ok_or_else(|| missing("target"))?)
            }
            CommandType::Approve => Command::Approve(self.target.ok_or_else(|| missing("target"))?),
            CommandType::Reject => Command::Reject(self.target.ok_or_else(|| missing("target"))?),
            CommandType::Retire => Command::Retire(self.target.ok_or_else(|| missing("target"))?),
            CommandType::Promote => {
                Command::Promote(self.promote.ok_or_else(|| missing("promote"))?)
            }
            CommandType::Rollback => {
                Command::Rollback(self.rollback.ok_or_else(|| missing("rollback"))?)
            }
            CommandType::SetCatalog => {
                Command::SetCatalog(self.catalog.ok_or_else(|| missing("catalog"))?)
            }
        };
        Ok(CommandEnvelope {
            command_id: id,
            actor: self.actor,
            submitted_at_utc: self.submitted_at_utc,
            reason: self.reason,
            command,
        })
    }
}

/// Encodes a command envelope.
pub fn encode_command(e: &CommandEnvelope) -> Vec<u8> {
    COMMANDS.encode(&AvroEnvelope::from(e))
}

/// Decodes a command envelope.
pub fn decode_command(bytes: &[u8]) -> Result<CommandEnvelope, DecodeError> {
    COMMANDS
        .decode::<AvroEnvelope>(bytes, "command")?
        .into_envelope()
}

/// Encodes an event.
pub fn encode_event(e: &RegistryEvent) -> Vec<u8> {
    EVENTS.encode(e)
}

/// Decodes an event.
pub fn decode_event(bytes: &[u8]) -> Result<RegistryEvent, DecodeError> {
    EVENTS.decode(bytes, "event")
}
