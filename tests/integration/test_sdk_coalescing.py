"""Concurrent SDK lookups reach a real supernode as one LookupMany, each answered as alone."""

import asyncio
import dataclasses

import pytest

from client_sdk import Endpoint, Identity, InvalidArgument, NotFound, Presence
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, Clients, unique

KEY = Identity.generate().public_key


def calls(node: SupernodeProcess, method: str) -> float:
    return node.calls(method, "OK", "NOT_FOUND", "INVALID_ARGUMENT")


async def test_concurrent_lookups_share_one_lookup_many_and_keep_their_own_answers(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    target = supernode.grpc_target
    contacts = [await sdk_clients.user(target, f"contact{i}") for i in range(5)]
    for i, contact in enumerate(contacts):
        await contact.register_device(
            "phone", transport_key=KEY, endpoints=[Endpoint("192.0.2.7", 5000 + i)]
        )
    app = await sdk_clients.user(target, "app")
    await app.lookup(contacts[0].handle)  # logged in: the login is not part of the count
    lookups_before, many_before = calls(supernode, "Lookup"), calls(supernode, "LookupMany")

    nobody = unique("nobody")
    wanted = [c.handle for c in contacts] + [contacts[0].handle, nobody, "NOT A HANDLE"]
    results = await asyncio.gather(*(app.lookup(h) for h in wanted), return_exceptions=True)

    for contact, result in zip([*contacts, contacts[0]], results, strict=False):
        assert isinstance(result, Presence), result
        assert result.account.handle == contact.handle
        [device] = result.devices
        assert device.device_id == "phone" and device.transport_key == KEY
    assert isinstance(results[-2], NotFound) and nobody in results[-2].message
    assert isinstance(results[-1], InvalidArgument)  # sent alone: it fails by itself
    # Six valid handles (one twice) in one LookupMany; the invalid one as its own Lookup.
    assert calls(supernode, "LookupMany") - many_before == 1
    assert calls(supernode, "Lookup") - lookups_before == 1


async def test_without_coalescing_each_lookup_is_its_own_call(
    supernode: SupernodeProcess, sdk_clients: Clients
) -> None:
    target = supernode.grpc_target
    contacts = [await sdk_clients.user(target, f"contact{i}") for i in range(3)]
    config = dataclasses.replace(TEST_CONFIG, coalesce_lookups=False)
    app = await sdk_clients.user(target, "app", config=config)
    await app.lookup(contacts[0].handle)
    lookups_before = calls(supernode, "Lookup")
    await asyncio.gather(*(app.lookup(c.handle) for c in contacts))
    assert calls(supernode, "Lookup") - lookups_before == 3


def test_client_config_refuses_batch_settings_out_of_range() -> None:
    with pytest.raises(ValueError, match="lookup_batch_max"):
        dataclasses.replace(TEST_CONFIG, lookup_batch_max=0)
    with pytest.raises(ValueError, match="lookup_batch_window_seconds"):
        dataclasses.replace(TEST_CONFIG, lookup_batch_window_seconds=-0.1)
