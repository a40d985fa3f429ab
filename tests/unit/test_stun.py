from aioice import stun

from supernode.rendezvous.stun import binding_response


def _request() -> stun.Message:
    return stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)


def test_binding_request_gets_the_source_address() -> None:
    request = _request()
    raw = binding_response(bytes(request), ("198.18.5.6", 40123))
    assert raw is not None
    response = stun.parse_message(raw)
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request.transaction_id
    assert response.attributes["XOR-MAPPED-ADDRESS"] == ("198.18.5.6", 40123)
    assert response.attributes["MAPPED-ADDRESS"] == ("198.18.5.6", 40123)
    assert "FINGERPRINT" in response.attributes


def test_ipv6_source() -> None:
    raw = binding_response(bytes(_request()), ("2001:db8::1", 5))
    assert raw is not None
    assert stun.parse_message(raw).attributes["XOR-MAPPED-ADDRESS"] == ("2001:db8::1", 5)


def test_garbage_and_non_requests_are_dropped() -> None:
    assert binding_response(b"", ("198.18.0.1", 1)) is None
    assert binding_response(b"\x00" * 19, ("198.18.0.1", 1)) is None
    assert binding_response(b"GET / HTTP/1.1\r\n\r\n", ("198.18.0.1", 1)) is None
    indication = stun.Message(
        message_method=stun.Method.BINDING, message_class=stun.Class.INDICATION
    )
    assert binding_response(bytes(indication), ("198.18.0.1", 1)) is None
    response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)
    assert binding_response(bytes(response), ("198.18.0.1", 1)) is None
