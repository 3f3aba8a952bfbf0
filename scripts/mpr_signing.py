"""Signing as MPR2 §8 defines it, with well-known Python packages (cryptography for
Ed25519, rfc8785 for canonical JSON): the DSSE pre-authentication encoding, Ed25519 keys
with their TUF-style key ids, the `mpr-signature` header of a JSON command, and a gate
receipt signed as an in-toto Statement. Used by the stock-client check (the README's signing
example) and the chaos soak."""
import base64
import hashlib
import json

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

JSON_COMMAND = "application/vnd.mpr.command.v1+json"
RECEIPT = "application/vnd.in-toto+json"


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


class Key:
    """An Ed25519 key: a new one, or one read from a PKCS#8 PEM file (`mpr keygen --out`)."""

    def __init__(self, pem_path: str | None = None):
        if pem_path is None:
            self.sk = Ed25519PrivateKey.generate()
        else:
            # `mpr keygen` writes PKCS#8 v2 (RFC 5958, with the public key), which
            # `cryptography` does not read; its private key is the 32-byte seed in the
            # CurvePrivateKey octet string (04 20) inside the privateKey field (04 22).
            der = base64.b64decode("".join(
                l for l in open(pem_path).read().splitlines() if l and not l.startswith("-----")))
            at = der.index(b"\x04\x22\x04\x20") + 4
            self.sk = Ed25519PrivateKey.from_private_bytes(der[at:at + 32])
        raw = self.sk.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        self.public_hex = raw.hex()
        self.keyid = hashlib.sha256(raw).hexdigest()

    def sign(self, payload_type: str, body: bytes) -> dict:
        return {"keyid": self.keyid,
                "sig": base64.b64encode(self.sk.sign(pae(payload_type, body))).decode()}


def sign_command(command: dict, key: Key) -> str:
    """The mpr-signature header of a JSON command: over its RFC 8785 (JCS) bytes."""
    return json.dumps(key.sign(JSON_COMMAND, rfc8785.dumps(command)))


def sign_receipt(receipt: dict, gate: Key) -> dict:
    """A gate receipt signed as an in-toto Statement v1 about the bundle."""
    r = {k: v for k, v in receipt.items() if k != "signature"}
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"{r['bundle_id']}@{r['bundle_version']}",
                     "digest": {"sha256": r["bundle_digest"]}}],
        "predicateType": "https://mpr.dev/attestations/gate-receipt/v1",
        "predicate": {k: r[k] for k in
                      ("receipt_id", "gate_name", "verdict", "evaluated_at_utc", "evidence_refs")},
    }
    r["signature"] = gate.sign(RECEIPT, rfc8785.dumps(statement))
    return r
