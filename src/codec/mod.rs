//! Wire formats. Commands arrive as Avro single-object encoding (the default) or as JSON;
//! events travel as Avro single-object encoding. Schemas come from `schemas/*.avsc`,
//! compiled into the binary. Decoding failures are typed and keep what could be recovered
//! (the command_id) so the processor can reject instead of dropping.

pub mod avro;

use uuid::Uuid;

use crate::domain::autopilot::Signal;
use crate::domain::bundle::canonical_json;
use crate::domain::bundle::limits::MAX_COMMAND_BYTES;
use crate::domain::trust::{
    COMMAND_AVRO_TYPE, COMMAND_JSON_TYPE, Credential, SIGNAL_AVRO_TYPE, SIGNAL_JSON_TYPE,
    Signature, Signer,
};
use crate::domain::{CommandEnvelope, ErrorCode, RegistryEvent, Rejection};

/// MIME type that marks a JSON command.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// MIME type of Avro single-object encoded records.
pub const CONTENT_TYPE_AVRO: &str = "application/vnd.apache.avro.v1+binary";

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    /// INVALID_PAYLOAD or UNSUPPORTED_SCHEMA_VERSION.
    pub code: ErrorCode,
    /// What is wrong, naming the field where known.
    pub message: String,
    /// The command_id, when it could still be read.
    pub command_id: Option<Uuid>,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            command_id: None,
        }
    }

    /// As a domain rejection.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(self.code, self.message.clone())
    }
}

/// Decodes a command from the `commands` topic: JSON when `content_type` says so or the
/// payload is not Avro-framed, otherwise Avro single-object encoding.
pub fn decode_command(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<CommandEnvelope, DecodeError> {
    if bytes.len() > MAX_COMMAND_BYTES {
        // The broker bounds a record's size, so reading the id of an oversized JSON command
        // is bounded work; it lets the command be rejected instead of only dead-lettered.
        #[derive(serde::Deserialize)]
        struct IdOnly {
            command_id: Uuid,
        }
        return Err(DecodeError {
            code: ErrorCode::InvalidPayload,
            message: format!(
                "command is {} bytes; the limit is {MAX_COMMAND_BYTES}",
                bytes.len()
            ),
            command_id: serde_json::from_slice::<IdOnly>(bytes)
                .ok()
                .map(|i| i.command_id)
                .or_else(|| avro::peek_command_id(bytes)),
        });
    }
    if is_json(bytes, content_type) {
        decode_command_json(bytes)
    } else {
        avro::decode_command(bytes)
    }
}

/// Whether a command record is JSON: its content type says so, or it is not Avro-framed.
fn is_json(bytes: &[u8], content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| c.starts_with(CONTENT_TYPE_JSON)) || !avro::is_framed(bytes)
}

/// The credential of a command record: the signature in its `mpr-signature` header and
/// the canonical bytes it must cover (MPR2 §8.1): the record value itself for Avro, the
/// RFC 8785 form of the JSON value for JSON.
pub fn command_credential(
    bytes: &[u8],
    content_type: Option<&str>,
    signature_header: Option<&str>,
) -> Credential {
    let Some(h) = signature_header else {
        return Credential::Unsigned;
    };
    let signature: Signature = match serde_json::from_str(h) {
        Ok(s) => s,
        Err(e) => return Credential::Malformed(e.to_string()),
    };
    if !is_json(bytes, content_type) {
        return Credential::Signed {
            signature,
            payload_type: COMMAND_AVRO_TYPE,
            body: bytes.to_vec(),
        };
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => Credential::Signed {
            signature,
            payload_type: COMMAND_JSON_TYPE,
            body: canonical_json(&v),
        },
        Err(e) => Credential::Malformed(format!("the command is not JSON: {e}")),
    }
}

/// An Avro command signed by `signer`: the record value and its `mpr-signature` header.
pub fn sign_avro_command(env: &CommandEnvelope, signer: &Signer) -> (Vec<u8>, String) {
    let bytes = avro::encode_command(env);
    let sig = signer.sign(COMMAND_AVRO_TYPE, &bytes);
    (
        bytes,
        serde_json::to_string(&sig).expect("signatures serialize"),
    )
}

/// The `mpr-signature` header of a JSON command, by `signer` over its JCS form.
pub fn sign_json_command(command: &serde_json::Value, signer: &Signer) -> String {
    let sig = signer.sign(COMMAND_JSON_TYPE, &canonical_json(command));
    serde_json::to_string(&sig).expect("signatures serialize")
}

/// Decodes a JSON command, recovering the command_id when the rest is invalid.
pub fn decode_command_json(bytes: &[u8]) -> Result<CommandEnvelope, DecodeError> {
    serde_json::from_slice::<CommandEnvelope>(bytes).map_err(|e| {
        let command_id = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("command_id")?.as_str()?.parse().ok());
        DecodeError {
            code: ErrorCode::InvalidPayload,
            message: format!("command JSON does not match the contract: {e}"),
            command_id,
        }
    })
}

/// Decodes one signal from `signals` (Avro single-object encoding, or JSON when the
/// content type says so or the bytes are not framed) and the credential its
/// `mpr-signature` header gives over its canonical bytes (the Avro datum as sent, or the
/// RFC 8785 form of the JSON).
pub fn decode_signal(
    bytes: &[u8],
    content_type: Option<&str>,
    signature_header: Option<&str>,
) -> Result<(Signal, Credential), DecodeError> {
    if bytes.len() > MAX_SIGNAL_BYTES {
        return Err(DecodeError::new(
            ErrorCode::InvalidPayload,
            format!(
                "signal is {} bytes; the limit is {MAX_SIGNAL_BYTES}",
                bytes.len()
            ),
        ));
    }
    let json = is_json(bytes, content_type);
    let signal = if json {
        serde_json::from_slice::<Signal>(bytes).map_err(|e| {
            DecodeError::new(
                ErrorCode::InvalidPayload,
                format!("signal JSON does not match the contract: {e}"),
            )
        })?
    } else {
        avro::decode_signal(bytes)?
    };
    signal
        .validate()
        .map_err(|r| DecodeError::new(r.code, r.message))?;
    let credential = match signature_header {
        None => Credential::Unsigned,
        Some(h) => match serde_json::from_str::<Signature>(h) {
            Err(e) => Credential::Malformed(e.to_string()),
            Ok(signature) if json => Credential::Signed {
                signature,
                payload_type: SIGNAL_JSON_TYPE,
                body: canonical_json(
                    &serde_json::from_slice::<serde_json::Value>(bytes)
                        .expect("parsed as a signal above"),
                ),
            },
            Ok(signature) => Credential::Signed {
                signature,
                payload_type: SIGNAL_AVRO_TYPE,
                body: bytes.to_vec(),
            },
        },
    };
    Ok((signal, credential))
}

/// Signs a JSON signal: the `mpr-signature` header value.
pub fn sign_json_signal(signal: &serde_json::Value, signer: &Signer) -> String {
    let sig = signer.sign(SIGNAL_JSON_TYPE, &canonical_json(signal));
    serde_json::to_string(&sig).expect("signatures serialize")
}

/// Encodes and signs an Avro signal: the bytes and the `mpr-signature` header value.
pub fn sign_avro_signal(s: &Signal, signer: &Signer) -> (Vec<u8>, String) {
    let bytes = avro::encode_signal(s);
    let sig = signer.sign(SIGNAL_AVRO_TYPE, &bytes);
    (
        bytes,
        serde_json::to_string(&sig).expect("signatures serialize"),
    )
}

/// Largest signal record accepted.
pub const MAX_SIGNAL_BYTES: usize = 16 * 1024;

/// Encodes an event for the `events`/`catalog` topics.
pub fn encode_event(e: &RegistryEvent) -> Vec<u8> {
    avro::encode_event(e)
}

/// Decodes an event from the `events`/`catalog` topics.
pub fn decode_event(bytes: &[u8]) -> Result<RegistryEvent, DecodeError> {
    avro::decode_event(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_json_keeps_its_command_id() {
        let id = Uuid::new_v4();
        let big = serde_json::json!({"command_id": id, "pad": "x".repeat(300 * 1024)}).to_string();
        let e = decode_command(big.as_bytes(), Some(CONTENT_TYPE_JSON)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPayload);
        assert_eq!(e.command_id, Some(id));
    }
}
