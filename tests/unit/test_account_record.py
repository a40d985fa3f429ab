"""How an account is stored (``supernode.directory.account_record``): with its creation
signature, and accounts stored before signatures were kept still load."""

from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.directory.account_record import AccountRecord

ACCOUNT = pb.Account(handle="alice", account_key=b"k" * 32, created_at_ms=1).SerializeToString()


def test_a_record_round_trips_with_its_signature() -> None:
    record = AccountRecord(ACCOUNT, b"s" * 64)
    assert AccountRecord.decode(record.encode()) == record
    unsigned = AccountRecord(ACCOUNT)
    assert AccountRecord.decode(unsigned.encode()) == unsigned


def test_a_bare_account_stored_before_signatures_loads_without_one() -> None:
    assert AccountRecord.decode(ACCOUNT) == AccountRecord(ACCOUNT, b"")
    assert not ACCOUNT.startswith(b"\x01")  # field 1 (handle): tag 0x0a
