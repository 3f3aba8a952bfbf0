"""Signs JSON commands for MPR's commands topic (MPR2 §8.1), for the benchmark scripts:
Ed25519 (`cryptography`) over the DSSE pre-authentication encoding of the RFC 8785 form
(`rfc8785`) of the envelope. The key is a PKCS#8 PEM file named by the environment
variable BENCH_GATEWAY_KEY (the registry's gateway key); without it commands go unsigned.
scripts/stock_client_check.py is the documented, self-contained example of the same."""
import base64, hashlib, json, os

import rfc8785
from cryptography.hazmat.primitives import serialization

_KEY = None
if os.environ.get("BENCH_GATEWAY_KEY"):
    _KEY = serialization.load_pem_private_key(open(os.environ["BENCH_GATEWAY_KEY"], "rb").read(), None)
    _ID = hashlib.sha256(_KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()

TYPE = b"application/vnd.mpr.command.v1+json"


def headers(command: dict) -> list:
    """The Kafka headers of a JSON command: content-type and, with a key, mpr-signature."""
    h = [("content-type", b"application/json")]
    if _KEY is not None:
        body = rfc8785.dumps(command)
        pae = b"DSSEv1 %d %s %d %s" % (len(TYPE), TYPE, len(body), body)
        sig = {"keyid": _ID, "sig": base64.b64encode(_KEY.sign(pae)).decode()}
        h.append(("mpr-signature", json.dumps(sig).encode()))
    return h
