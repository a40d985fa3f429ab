"""How an account is stored (``supernode.directory.account_record``): with its creation
signature behind the signed bytes, readable as a plain Account by a node not yet
upgraded, and accounts stored before signatures were kept still load."""

from client_sdk.protocol import wire
from client_sdk.protocol.records import first_unknown_field
from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.directory.account_record import SIGNATURE_FIELD, AccountRecord

ACCOUNT = pb.Account(handle="alice", account_key=b"k" * 32, created_at_ms=1).SerializeToString()
SIGNATURE = bytes(range(64))


def test_a_record_round_trips_with_its_signature() -> None:
    record = AccountRecord(ACCOUNT, SIGNATURE)
    assert AccountRecord.decode(record.encode()) == record
    assert AccountRecord.decode(AccountRecord(ACCOUNT).encode()) == AccountRecord(ACCOUNT)


def test_a_node_not_yet_upgraded_reads_the_value_as_the_account() -> None:
    stored = pb.Account.FromString(AccountRecord(ACCOUNT, SIGNATURE).encode())
    assert stored.handle == "alice" and stored.account_key == b"k" * 32
    assert first_unknown_field(stored, "account") == f"account: field {SIGNATURE_FIELD}"


def test_a_bare_account_stored_before_signatures_loads_without_one() -> None:
    assert AccountRecord.decode(ACCOUNT) == AccountRecord(ACCOUNT, b"")


def test_a_display_name_ending_like_a_signature_is_not_one() -> None:
    """The trailer's bytes inside a field of a bare account are that field's."""
    lookalike = wire.field(SIGNATURE_FIELD, SIGNATURE).decode("latin-1")
    name = "x" + lookalike
    bare = pb.Account(handle="mallory", display_name=name).SerializeToString()
    assert bare.endswith(wire.field(SIGNATURE_FIELD, SIGNATURE))  # looks like one
    assert AccountRecord.decode(bare) == AccountRecord(bare)
