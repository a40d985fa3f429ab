"""The blocking facade against a real supernode: same behaviour, no event loop in sight."""

import pytest

from client_sdk import EventKind, Identity, NotFound, SyncClient
from tests.integration.process import SupernodeProcess
from tests.integration.sdk_support import TEST_CONFIG, unique


def test_sync_client_registers_looks_up_watches_and_closes(supernode: SupernodeProcess) -> None:
    target = supernode.grpc_target
    with (
        SyncClient(target, Identity.generate(), unique("dora"), config=TEST_CONFIG) as dora,
        SyncClient(target, Identity.generate(), unique("eve"), config=TEST_CONFIG) as eve,
    ):
        dora.create_account("Dora")
        eve.create_account("Eve")
        watch = eve.watch([dora.client.handle])
        snapshot = watch.next(timeout=10)
        assert snapshot is not None and snapshot.kind is EventKind.SNAPSHOT
        with pytest.raises(TimeoutError):
            watch.next(timeout=0.2)  # nothing happened yet

        registration = dora.register_device("pad", transport_key=Identity.generate().public_key)
        assert dora.registration("pad") == registration
        online = watch.next(timeout=10)
        assert online is not None and online.kind is EventKind.ONLINE
        assert [d.device_id for d in eve.lookup(dora.client.handle).devices] == ["pad"]
        with pytest.raises(NotFound):
            eve.lookup(unique("nobody"))

        dora.close()  # unregisters: Eve sees it at once
        offline = watch.next(timeout=10)
        assert offline is not None and offline.kind is EventKind.OFFLINE
        watch.close()
        assert watch.next(timeout=1) is None  # a closed watch is over
