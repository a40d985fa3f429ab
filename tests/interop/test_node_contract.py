"""The Node.js client's contract module (interop/node/contract.mjs) against the Python one,
on vectors: its canonical encoding of signed bodies must be byte for byte what
``SerializeToString(deterministic=True)`` gives (the server refuses anything else), and its
Ed25519 verification must accept and refuse exactly what ``client_sdk.protocol.signing``
does, weak keys and malleable signatures included (OpenSSL alone accepts some); and its
display-name check, written from the proto's Unicode categories, must agree with the
server's ``str.isprintable``.

One ``node interop/node/vectors.mjs`` run answers every case.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from client_sdk.identity import Identity
from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.signing import DEVICE_RECORD_DOMAIN, signature_is_valid
from client_sdk.protocol.v1 import directory_pb2 as pb
from client_sdk.protocol.validation import ED25519_ORDER, check_display_name
from tests.interop.npm import NodeClient

RANDOM_RECORDS = 200
Case = dict[str, Any]


def run_vectors(client: NodeClient, cases: list[Case]) -> list[Case]:
    script = client.script.with_name("vectors.mjs")
    result = subprocess.run(
        [client.node, str(script)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: list[Case] = json.loads(result.stdout)
    assert len(answers) == len(cases)
    return answers


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def maybe(rng: random.Random, value: Any, default: Any) -> Any:
    """The value, or (a third of the time) the field's default, set explicitly: a
    default must be left out of the encoding however the caller spells it."""
    return default if rng.random() < 1 / 3 else value


def random_endpoint(rng: random.Random) -> Case:
    return {
        "address": maybe(rng, rng.choice(["192.0.2.1", "2001:db8::1", "::1"]), ""),
        "port": maybe(rng, rng.randrange(1, 2**32), 0),
        "protocol": maybe(rng, rng.choice(["TRANSPORT_PROTOCOL_UDP", "TRANSPORT_PROTOCOL_TCP"]), 0),
        "type": maybe(rng, rng.choice(["CANDIDATE_TYPE_HOST", "CANDIDATE_TYPE_RELAY"]), 0),
    }


def random_record(rng: random.Random) -> Case:
    return {
        "handle": maybe(rng, f"user-{rng.randrange(10**6)}", ""),
        "device_id": maybe(rng, "phone_" + "x" * rng.randrange(60), ""),
        "seq": maybe(rng, str(rng.choice([1, 2**32, 2**53 + 1, 2**64 - 1])), "0"),
        "issued_at_ms": maybe(rng, str(rng.choice([1796690851179, -1, 2**63 - 1])), "0"),
        "ttl_seconds": maybe(rng, rng.randrange(1, 2**32), 0),
        "endpoints": [random_endpoint(rng) for _ in range(rng.randrange(4))],
        "transport_key": maybe(rng, b64(rng.randbytes(32)), ""),
        "status": maybe(rng, rng.choice(["DEVICE_STATUS_AWAY", "DEVICE_STATUS_BUSY"]), 0),
        "capabilities": [rng.choice(["chat", "voice/opus", "é"]) for _ in range(rng.randrange(3))],
    }


FIXED_BODIES: list[tuple[type[Message], Case]] = [
    (
        pb.Account,
        {
            "handle": "jose",
            "account_key": b64(bytes(range(32))),
            "display_name": "José Álvarez 🎉",
            "discoverable": False,
            "created_at_ms": "0",
        },
    ),
    (pb.Account, {"handle": "", "discoverable": True, "created_at_ms": "1796690851179"}),
    (
        pb.PrivacySettings,
        {
            "handle": "alice",
            "seq": "7",
            "issued_at_ms": "1796690851179",
            "visibility": "VISIBILITY_CONTACTS",
            "allowed": ["bob", "carol"],
            "blocked": [],
        },
    ),
    (pb.PrivacySettings, {"seq": "0", "visibility": "VISIBILITY_UNSPECIFIED"}),
    (
        pb.KeyRotation,
        {
            "handle": "alice",
            "old_key": b64(b"\x01" * 32),
            "new_key": b64(b"\x02" * 32),
            "seq": "1",
            "issued_at_ms": "1796690851179",
        },
    ),
]


def python_encoding(message_type: type[Message], fields: Case) -> str:
    message = json_format.ParseDict(fields, message_type())
    return message.SerializeToString(deterministic=True).hex()


def test_canonical_encoding_matches_python(node_client: NodeClient) -> None:
    rng = random.Random(17)
    bodies = FIXED_BODIES + [(pb.DeviceRecord, random_record(rng)) for _ in range(RANDOM_RECORDS)]
    cases = [{"encode": t.DESCRIPTOR.name, "fields": fields} for t, fields in bodies]
    for (message_type, fields), answer in zip(bodies, run_vectors(node_client, cases), strict=True):
        assert answer["hex"] == python_encoding(message_type, fields), fields


def test_signatures_verify_as_in_python(node_client: NodeClient) -> None:
    identity = Identity.generate()
    body = b"a device record"
    good = identity.sign(DEVICE_RECORD_DOMAIN, body)
    s = int.from_bytes(good[32:], "little")
    identity_point = (1).to_bytes(32, "little")
    # (key, domain, body, signature): each judged by Python first, then by the JS.
    vectors = [
        (identity.public_key, DEVICE_RECORD_DOMAIN, body, good),
        (identity.public_key, DEVICE_RECORD_DOMAIN, body + b"!", good),
        (identity.public_key, b"supernode.v1.Login", body, good),
        (Identity.generate().public_key, DEVICE_RECORD_DOMAIN, body, good),
        # S + L verifies in lax implementations: a second encoding of one signature.
        (
            identity.public_key,
            DEVICE_RECORD_DOMAIN,
            body,
            good[:32] + (s + ED25519_ORDER).to_bytes(32, "little"),
        ),
        # The identity key with R = identity, S = 0 "verifies" every message in OpenSSL.
        (identity_point, DEVICE_RECORD_DOMAIN, body, identity_point + bytes(32)),
        (identity.public_key[:31], DEVICE_RECORD_DOMAIN, body, good),
        (identity.public_key, DEVICE_RECORD_DOMAIN, body, good[:63]),
    ]
    expected = [signature_is_valid(*vector) for vector in vectors]
    assert expected[0] and not any(expected[1:])
    cases: list[Case] = [
        {
            "verify": {
                "key": key.hex(),
                "domain": domain.decode(),
                "body": raw.hex(),
                "signature": signature.hex(),
            }
        }
        for key, domain, raw, signature in vectors
    ]
    cases.append({"sign": {"domain": DEVICE_RECORD_DOMAIN.decode(), "body": body.hex()}})
    *verdicts, signed = run_vectors(node_client, cases)
    assert [v["valid"] for v in verdicts] == expected
    # And what the JS signs verifies in Python.
    assert signature_is_valid(
        bytes.fromhex(signed["key"]), DEVICE_RECORD_DOMAIN, body, bytes.fromhex(signed["signature"])
    )


# Display names judged alike (Account.display_name: code points, General Categories C and Z
# but SPACE). Characters unassigned in both Unicode versions only: Node's may be newer than
# the server's Python (the proto says so), and then a newly assigned character differs.
DISPLAY_NAMES = [
    "José Álvarez 🎉",
    "🎉" * 64,  # 64 code points, 128 UTF-16 units: accepted
    "🎉" * 65,
    "a" * 65,
    "",
    "tab\there",  # Cc
    "zero\u200bwidth",  # Cf
    "no\u00a0break",  # Zs other than SPACE
    "line\u2028sep",  # Zl
    "private\ue000",  # Co
    "unassigned\u0378",  # Cn
    "ideograph 山田 ٣",  # letters and a digit of other scripts
    "combining e\u0301",  # Mn is printable
]


def test_display_names_are_judged_as_in_python(node_client: NodeClient) -> None:
    expected = []
    for name in DISPLAY_NAMES:
        try:
            check_display_name("display_name", name, 64)
            expected.append(True)
        except InvalidField:
            expected.append(False)
    answers = run_vectors(node_client, [{"display_name": name} for name in DISPLAY_NAMES])
    assert [a["valid"] for a in answers] == expected
    assert expected.count(False) == 8
