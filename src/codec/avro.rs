//! Avro single-object encoding (`C3 01` + CRC-64-AVRO fingerprint + datum) for command
//! envelopes and registry events, using the schemas in `schemas/`.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::{GenericSingleObjectReader, Schema, write_avro_datum_ref};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DecodeError;
use crate::domain::command::{
    BundleTarget, Promote, PublishBundle, RegisterKey, RevokeKey, Rollback,
};
use crate::domain::{
    Actor, CatalogEntry, Command, CommandEnvelope, CommandType, ErrorCode, RegistryEvent, Timestamp,
};

/// The command envelope schema text.
pub const COMMAND_SCHEMA_JSON: &str = include_str!("../../schemas/command_envelope.avsc");
/// The registry event schema text.
pub const EVENT_SCHEMA_JSON: &str = include_str!("../../schemas/registry_event.avsc");
/// Earlier schemas still read (`schemas/history/`): records their writers left on the log
/// (events, and commands of producers not yet upgraded) decode through Avro schema
/// resolution into the current types, the fields added since taking their defaults.
const COMMAND_HISTORY: [&str; 1] = [include_str!(
    "../../schemas/history/command_envelope.v2.avsc"
)];
const EVENT_HISTORY: [&str; 1] = [include_str!("../../schemas/history/registry_event.v2.avsc")];

/// One schema, parsed once, with its single-object header and reader.
///
/// Encoding serializes the value straight into Avro (`write_avro_datum_ref`), not through
/// the library's `Value`, whose maps are `HashMap`s: written from them, a map of two or more
/// entries (a bundle's `metadata`) came out in a different order on each call, so the same
/// event had different bytes. Serialized from the domain's `BTreeMap`, entries are written
/// in key order, and the same value always gives the same bytes. That serializer cannot
/// resolve references to named types, so it writes against a copy of the schema with each
/// reference replaced by the definition ([`inline_named_types`]); Avro's binary encoding
/// carries no names, so the bytes are those of the bundled schema, whose fingerprint heads
/// them.
struct Codec {
    header: Vec<u8>,
    datum_schema: Schema,
    reader: GenericSingleObjectReader,
    /// The current schema, as the reader schema of a resolution.
    schema: Schema,
    /// Earlier writer schemas by their single-object header.
    history: Vec<(Vec<u8>, Schema)>,
}

impl Codec {
    fn new(text: &str) -> Self {
        Self::with_history(text, &[])
    }

    fn with_history(text: &str, history: &[&str]) -> Self {
        let schema = Schema::parse_str(text).expect("bundled Avro schema parses");
        let header = RabinFingerprintHeader::from_schema(&schema).build_header();
        let json: serde_json::Value = serde_json::from_str(text).expect("bundled schema is JSON");
        let datum_schema = Schema::parse(&inline_named_types(&json))
            .expect("bundled Avro schema with named types inlined parses");
        let reader =
            GenericSingleObjectReader::new(schema.clone()).expect("bundled Avro schema resolves");
        let history = history
            .iter()
            .map(|t| {
                let old = Schema::parse_str(t).expect("historical Avro schema parses");
                (
                    RabinFingerprintHeader::from_schema(&old).build_header(),
                    old,
                )
            })
            .collect();
        Self {
            header,
            datum_schema,
            reader,
            schema,
            history,
        }
    }

    fn encode<T: Serialize>(&self, value: &T) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(&self.header);
        write_avro_datum_ref(&self.datum_schema, value, &mut out)
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
        let mut body = bytes;
        let read = if bytes[..self.header.len()] == self.header[..] {
            self.reader.read_value(&mut body)
        } else if let Some((h, old)) = self.history.iter().find(|(h, _)| bytes.starts_with(h)) {
            body = &bytes[h.len()..];
            apache_avro::from_avro_datum(old, &mut body, Some(&self.schema))
        } else {
            return Err(DecodeError::new(
                ErrorCode::UnsupportedSchemaVersion,
                format!(
                    "{what} has unknown Avro schema fingerprint {}",
                    hex::encode(&bytes[2..self.header.len()])
                ),
            ));
        };
        let value = read.map_err(|e| {
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

/// `schema` (Avro schema JSON) with every reference to a named type replaced by a copy of
/// its definition, each copy's named types renamed so that no name is defined twice.
fn inline_named_types(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn named(o: &serde_json::Map<String, Value>) -> Option<&str> {
        match o.get("type").and_then(Value::as_str) {
            Some("record" | "enum" | "fixed") => o.get("name").and_then(Value::as_str),
            _ => None,
        }
    }
    fn rename(v: &mut Value, copies: &mut usize) {
        match v {
            Value::Object(o) => {
                if let Some(name) = named(o) {
                    *copies += 1;
                    let renamed = format!("{name}_inlined_{copies}");
                    o.insert("name".into(), Value::String(renamed));
                }
                for (k, x) in o.iter_mut() {
                    if matches!(k.as_str(), "type" | "items" | "values" | "fields") {
                        rename(x, copies);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| rename(x, copies)),
            _ => {}
        }
    }
    fn walk(v: &Value, defs: &mut HashMap<String, Value>, copies: &mut usize) -> Value {
        match v {
            Value::String(s) if defs.contains_key(s) => {
                let mut copy = defs[s].clone();
                rename(&mut copy, copies);
                copy
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, defs, copies)).collect()),
            Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for (k, x) in o {
                    let x = if matches!(k.as_str(), "type" | "items" | "values" | "fields") {
                        walk(x, defs, copies)
                    } else {
                        x.clone()
                    };
                    out.insert(k.clone(), x);
                }
                if let Some(name) = named(&out) {
                    defs.insert(name.to_owned(), Value::Object(out.clone()));
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
    walk(schema, &mut HashMap::new(), &mut 0)
}

static COMMANDS: LazyLock<Codec> =
    LazyLock::new(|| Codec::with_history(COMMAND_SCHEMA_JSON, &COMMAND_HISTORY));
static EVENTS: LazyLock<Codec> =
    LazyLock::new(|| Codec::with_history(EVENT_SCHEMA_JSON, &EVENT_HISTORY));
static SIGNALS: LazyLock<Codec> = LazyLock::new(|| Codec::new(SIGNAL_SCHEMA_JSON));

/// The signal schema text.
pub const SIGNAL_SCHEMA_JSON: &str = include_str!("../../schemas/signal.avsc");

/// Encodes a signal (single-object encoding).
pub fn encode_signal(s: &crate::domain::autopilot::Signal) -> Vec<u8> {
    SIGNALS.encode(s)
}

/// Decodes a signal.
pub fn decode_signal(bytes: &[u8]) -> Result<crate::domain::autopilot::Signal, DecodeError> {
    SIGNALS.decode(bytes, "signal")
}

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
    register_key: Option<RegisterKey>,
    revoke_key: Option<RevokeKey>,
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
            register_key: None,
            revoke_key: None,
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
            Command::RegisterKey(k) => a.register_key = Some(k.clone()),
            Command::RevokeKey(k) => a.revoke_key = Some(k.clone()),
            // JSON only (MPR2 §9): no Avro body field; decoding says so.
            Command::SetRollbackPolicy(_)
            | Command::Observe(_)
            | Command::CanarySetShare(_)
            | Command::CanaryComplete(_)
            | Command::CanaryAbort(_) => {}
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
            self.register_key.is_some(),
            self.revoke_key.is_some(),
        ];
        let json_only = matches!(
            self.command_type,
            CommandType::SetRollbackPolicy
                | CommandType::Observe
                | CommandType::CanarySetShare
                | CommandType::CanaryComplete
                | CommandType::CanaryAbort
        );
        if !json_only && set.iter().filter(|s| **s).count() != 1 {
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
            CommandType::RegisterKey => {
                Command::RegisterKey(self.register_key.ok_or_else(|| missing("register_key"))?)
            }
            CommandType::RevokeKey => {
                Command::RevokeKey(self.revoke_key.ok_or_else(|| missing("revoke_key"))?)
            }
            t @ (CommandType::SetRollbackPolicy
            | CommandType::Observe
            | CommandType::CanarySetShare
            | CommandType::CanaryComplete
            | CommandType::CanaryAbort) => {
                return Err(DecodeError {
                    code: ErrorCode::InvalidPayload,
                    message: format!(
                        "command_type {} travels as JSON (content-type application/json)",
                        t.as_str()
                    ),
                    command_id: Some(id),
                });
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

/// Decodes a command envelope. When the datum is invalid but starts with this schema's
/// header and a readable `command_id` (its first field), the error carries that id.
pub fn decode_command(bytes: &[u8]) -> Result<CommandEnvelope, DecodeError> {
    let decoded = COMMANDS
        .decode::<AvroEnvelope>(bytes, "command")
        .and_then(AvroEnvelope::into_envelope);
    decoded.map_err(|mut e| {
        e.command_id = e.command_id.or_else(|| peek_command_id(bytes));
        e
    })
}

/// The `command_id` of an Avro command envelope, read from its first field without
/// decoding the rest (bounded work for an oversized or otherwise invalid command).
pub fn peek_command_id(bytes: &[u8]) -> Option<Uuid> {
    let header = &COMMANDS.header;
    let mut body = bytes.strip_prefix(&header[..])?;
    // A UUID's text is 36 bytes, whose Avro length is the one byte 0x48 (zigzag 36): check
    // it first, so that a forged length never makes the decoder allocate.
    if body.first() != Some(&0x48) {
        return None;
    }
    match apache_avro::from_avro_datum(&apache_avro::Schema::String, &mut body, None).ok()? {
        apache_avro::types::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Encodes an event.
pub fn encode_event(e: &RegistryEvent) -> Vec<u8> {
    EVENTS.encode(e)
}

/// Decodes an event.
pub fn decode_event(bytes: &[u8]) -> Result<RegistryEvent, DecodeError> {
    EVENTS.decode(bytes, "event")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    /// The id of an Avro command is read from its first field whatever follows, and a
    /// forged length there is refused before anything is allocated.
    #[test]
    fn the_command_id_is_peeked_from_the_first_field_only() {
        let env = testkit::publish("mf", "fam", "1.0.0");
        let mut bytes = encode_command(&env);
        bytes.truncate(COMMANDS.header.len() + 40);
        bytes.extend([0xFF; 64]);
        assert_eq!(peek_command_id(&bytes), Some(env.command_id));
        let mut forged = COMMANDS.header.clone();
        forged.extend([0xFE, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert_eq!(peek_command_id(&forged), None);
        assert_eq!(peek_command_id(b"not avro"), None);
    }
}
