"""The visibility decision, the account-state ordering and settings validation: pure."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client_sdk.protocol.errors import InvalidField
from client_sdk.protocol.v1 import directory_pb2 as pb
from supernode.directory import account_state
from supernode.directory.privacy import Rule, hide_devices, may_see, parse_settings, searchable
from supernode.directory.validation import Limits

HANDLES = st.sampled_from(["alice", "bob", "carol", "dave", "erin"])
VISIBILITIES = st.sampled_from(
    [pb.VISIBILITY_UNSPECIFIED, pb.VISIBILITY_EVERYONE, pb.VISIBILITY_CONTACTS,
     pb.VISIBILITY_NOBODY]
)  # fmt: skip
RULES = st.builds(
    Rule, VISIBILITIES, st.frozensets(HANDLES, max_size=4), st.frozensets(HANDLES, max_size=4)
)


@given(RULES, HANDLES)
def test_the_owner_always_sees_itself(rule: Rule, owner: str) -> None:
    assert may_see(owner, rule, owner)


@given(HANDLES, HANDLES)
def test_no_settings_means_everyone(owner: str, caller: str) -> None:
    assert may_see(owner, None, caller)


@given(RULES, HANDLES, HANDLES)
def test_a_block_beats_every_visibility(rule: Rule, owner: str, caller: str) -> None:
    blocked = Rule(rule.visibility, rule.allowed | {caller}, rule.blocked | {caller})
    assert may_see(owner, blocked, caller) == (caller == owner)
    assert not searchable(blocked, caller)


@given(RULES, HANDLES, HANDLES)
def test_the_decision_by_visibility(rule: Rule, owner: str, caller: str) -> None:
    if caller == owner or caller in rule.blocked:
        return
    by_visibility: dict[int, bool] = {
        pb.VISIBILITY_UNSPECIFIED: True,
        pb.VISIBILITY_EVERYONE: True,
        pb.VISIBILITY_CONTACTS: caller in rule.allowed,
        pb.VISIBILITY_NOBODY: False,
    }
    assert may_see(owner, rule, caller) == by_visibility[rule.visibility]


@given(RULES, HANDLES, HANDLES)
def test_narrowing_never_admits_more(rule: Rule, owner: str, caller: str) -> None:
    """Blocking someone more, or allowing fewer, never lets a caller in who was out."""
    narrower = Rule(rule.visibility, rule.allowed - {"bob"}, rule.blocked | {"carol"})
    if not may_see(owner, rule, caller):
        assert not may_see(owner, narrower, caller)


def test_nobody_is_never_searchable() -> None:
    assert not searchable(Rule(pb.VISIBILITY_NOBODY, frozenset(), frozenset()), "bob")
    assert searchable(Rule(pb.VISIBILITY_CONTACTS, frozenset(), frozenset()), "bob")
    assert searchable(None, "bob")


def _settings(**fields: object) -> bytes:
    values: dict[str, object] = {"handle": "alice", "seq": 1, "issued_at_ms": 1,
                                 "visibility": pb.VISIBILITY_CONTACTS}  # fmt: skip
    values.update(fields)
    return pb.PrivacySettings(**values).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"handle": "Bad Handle"}, r"^settings\.handle"),
        ({"seq": 0}, r"^settings\.seq"),
        ({"visibility": 7}, r"^settings\.visibility: 7"),
        ({"allowed": ["ok-one", "x"]}, r"^settings\.allowed\[1\]"),
        ({"blocked": ["u" + str(i).zfill(3) for i in range(4)]}, r"4 handles, at most 3"),
    ],
)
def test_bad_settings_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidField, match=message):
        parse_settings(_settings(**fields), Limits(max_privacy_handles=3))


def test_garbage_settings_are_refused() -> None:
    with pytest.raises(InvalidField, match="not a serialized"):
        parse_settings(b"\xff\xff", Limits())


def test_a_refused_lookup_keeps_the_account_and_rotations() -> None:
    response = pb.LookupResponse(
        account=pb.Account(handle="alice"),
        devices=[pb.Device(attached_supernode="n1")],
        rotations=[pb.SignedKeyRotation(rotation=b"r")],
    )
    hidden = pb.LookupResponse.FromString(hide_devices(response.SerializeToString()))
    assert hidden.account.handle == "alice" and not hidden.devices
    assert list(hidden.rotations) == list(response.rotations)


@given(st.lists(st.sampled_from(["privacy", "rotation"]), max_size=8))
def test_every_change_moves_the_state_forward(changes: list[str]) -> None:
    """The mirror keeps the later of two states by position: each accepted change must
    raise it, whatever the order of rotations and privacy changes."""
    state: bytes | None = None
    seq = 0
    for change in changes:
        before = account_state.position(state)
        if change == "privacy":
            seq += 1
            state = account_state.with_privacy(state, _settings(seq=seq), b"s" * 64)
        else:
            state = account_state.with_rotation(state, pb.SignedKeyRotation(rotation=b"x"))
        assert account_state.position(state) > before
