"""End-to-end tests with the paho-mqtt 2.x client against the real `wasmq` binary.

Each behaviour runs in MQTT 3.1.1 and 5.0 (the `protocol` fixture) where it exists in both.
Every wait is bounded (conftest.WAIT_SECS); a fresh broker runs for each test.
"""

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import WAIT_SECS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_round_trip_at_each_qos(mqtt_client, protocol, qos):
    subscriber = mqtt_client(protocol)
    subscriber.connect()
    subscriber.subscribe("paho/qos", qos)
    publisher = mqtt_client(protocol)
    publisher.connect()

    payloads = [f"message {i} at qos {qos}".encode() for i in range(3)]
    for payload in payloads:
        publisher.publish("paho/qos", payload, qos)

    for payload in payloads:
        message = subscriber.expect_message()
        assert (message.topic, message.payload, message.qos) == ("paho/qos", payload, qos)
        assert not message.retain
    subscriber.expect_nothing(0.2)


def test_retained_message_goes_to_later_subscribers_until_cleared(mqtt_client, protocol):
    publisher = mqtt_client(protocol)
    publisher.connect()
    publisher.publish("paho/retained", b"last known value", qos=1, retain=True)

    late = mqtt_client(protocol)
    late.connect()
    late.subscribe("paho/#", 1)
    message = late.expect_message()
    assert (message.topic, message.payload, message.retain) == (
        "paho/retained",
        b"last known value",
        True,
    )

    # An empty retained payload clears it [MQTT-3.3.1-10].
    publisher.publish("paho/retained", b"", qos=1, retain=True)
    assert late.expect_message().payload == b""  # live delivery of the clearing message
    later = mqtt_client(protocol)
    later.connect()
    later.subscribe("paho/#", 1)
    later.expect_nothing()


def connect_with_will(mqtt_client, protocol, topic):
    client = mqtt_client(protocol)
    client.paho.will_set(topic, b"gone unexpectedly", qos=1, retain=False)
    client.connect()
    return client


def test_will_is_published_when_the_connection_drops(mqtt_client, protocol):
    watcher = mqtt_client(protocol)
    watcher.connect()
    watcher.subscribe("paho/will", 1)
    client = connect_with_will(mqtt_client, protocol, "paho/will")

    client.drop()

    will = watcher.expect_message()
    assert (will.topic, will.payload, will.qos) == ("paho/will", b"gone unexpectedly", 1)


def test_will_is_not_published_after_disconnect(mqtt_client, protocol):
    watcher = mqtt_client(protocol)
    watcher.connect()
    watcher.subscribe("paho/will", 1)
    client = connect_with_will(mqtt_client, protocol, "paho/will")

    client.disconnect()
    # A marker published after the DISCONNECT: a will, if any, would come before it or
    # shortly after; only the marker may arrive.
    marker = mqtt_client(protocol)
    marker.connect()
    marker.publish("paho/will", b"marker", qos=1)

    assert watcher.expect_message().payload == b"marker"
    watcher.expect_nothing()


def test_persistent_session_receives_what_was_published_while_offline(mqtt_client, protocol):
    def persistent_subscriber():
        return mqtt_client(protocol, client_id=f"paho-persistent-{protocol}", persistent=True)

    subscriber = persistent_subscriber()
    flags = subscriber.connect(clean_start=True, session_expiry_secs=60)
    assert not flags.session_present
    subscriber.subscribe("paho/offline", 1)
    subscriber.disconnect()

    publisher = mqtt_client(protocol)
    publisher.connect()
    payloads = [f"while offline {i}".encode() for i in range(3)]
    for payload in payloads:
        publisher.publish("paho/offline", payload, qos=1)
    publisher.publish("paho/offline", b"qos 0 is not queued offline", qos=0)
    # A QoS 0 publish returns once written, not once the broker routed it (through the
    # ACL plugin, a database query for a new topic): without this barrier the subscriber
    # could be back before it is routed, and rightly receive it. The broker handles one
    # connection's packets in order, so this PUBACK means the QoS 0 message was routed.
    publisher.publish("paho/offline-barrier", b"", qos=1)

    back = persistent_subscriber()
    flags = back.connect(clean_start=False, session_expiry_secs=60)
    assert flags.session_present
    for payload in payloads:
        message = back.expect_message()
        assert (message.topic, message.payload, message.qos) == ("paho/offline", payload, 1)
    back.expect_nothing()


def test_non_persistent_session_is_gone_after_disconnect(mqtt_client, protocol):
    subscriber = mqtt_client(protocol, client_id=f"paho-clean-{protocol}")
    subscriber.connect()
    subscriber.subscribe("paho/clean", 1)
    subscriber.disconnect()
    publisher = mqtt_client(protocol)
    publisher.connect()
    publisher.publish("paho/clean", b"nobody is listening", qos=1)

    back = mqtt_client(protocol, client_id=f"paho-clean-{protocol}", persistent=True)
    flags = back.connect(clean_start=False, session_expiry_secs=60)
    assert not flags.session_present
    back.expect_nothing()


def test_v5_properties_pass_through_request_response(mqtt_client):
    """A v5 request with Response Topic, Correlation Data, User Properties and Content
    Type; the responder answers on the response topic with the same correlation data."""
    responder = mqtt_client(mqtt.MQTTv5)
    responder.connect()
    responder.subscribe("paho/requests", 1)
    requester = mqtt_client(mqtt.MQTTv5)
    requester.connect()
    requester.subscribe("paho/responses/requester", 1)

    request_properties = Properties(PacketTypes.PUBLISH)
    request_properties.ResponseTopic = "paho/responses/requester"
    request_properties.CorrelationData = b"\x00\x01request-42"
    request_properties.UserProperty = [("tenant", "acme"), ("trace", "abc"), ("tenant", "dup")]
    request_properties.ContentType = "text/plain"
    request_properties.PayloadFormatIndicator = 1
    requester.publish("paho/requests", b"what time is it?", qos=1, properties=request_properties)

    request = responder.expect_message()
    received = request.properties
    assert request.payload == b"what time is it?"
    assert received.ResponseTopic == "paho/responses/requester"
    assert received.CorrelationData == b"\x00\x01request-42"
    # Order and duplicates of user properties are kept [MQTT-3.3.2-18].
    assert received.UserProperty == [("tenant", "acme"), ("trace", "abc"), ("tenant", "dup")]
    assert received.ContentType == "text/plain"
    assert received.PayloadFormatIndicator == 1

    response_properties = Properties(PacketTypes.PUBLISH)
    response_properties.CorrelationData = received.CorrelationData
    responder.publish(received.ResponseTopic, b"noon", qos=1, properties=response_properties)

    response = requester.expect_message()
    assert response.topic == "paho/responses/requester"
    assert response.payload == b"noon"
    assert response.properties.CorrelationData == b"\x00\x01request-42"


def test_v5_properties_are_not_sent_to_a_v311_subscriber(mqtt_client):
    subscriber = mqtt_client(mqtt.MQTTv311)
    subscriber.connect()
    subscriber.subscribe("paho/mixed", 1)
    publisher = mqtt_client(mqtt.MQTTv5)
    publisher.connect()
    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("k", "v")]
    properties.ResponseTopic = "paho/reply"
    publisher.publish("paho/mixed", b"from v5", qos=1, properties=properties)

    message = subscriber.expect_message()
    assert (message.topic, message.payload, message.qos) == ("paho/mixed", b"from v5", 1)


def test_shared_subscription_splits_messages_between_members(mqtt_client, protocol):
    members = [mqtt_client(protocol) for _ in range(2)]
    for member in members:
        member.connect()
        member.subscribe("$share/workers/paho/jobs", 1)
    plain = mqtt_client(protocol)
    plain.connect()
    plain.subscribe("paho/jobs", 1)
    publisher = mqtt_client(protocol)
    publisher.connect()

    payloads = [f"job {i}".encode() for i in range(10)]
    for payload in payloads:
        publisher.publish("paho/jobs", payload, qos=1)

    # A non-shared subscriber gets every message.
    assert [plain.expect_message().payload for _ in payloads] == payloads
    # The group gets each message once, spread over both members.
    received = [[], []]
    deadline = time.monotonic() + WAIT_SECS
    while len(received[0]) + len(received[1]) < len(payloads) and time.monotonic() < deadline:
        for index, member in enumerate(members):
            try:
                received[index].append(member.messages.get(timeout=0.05).payload)
            except queue.Empty:
                pass
    for member in members:
        member.expect_nothing(0.3)
    assert sorted(received[0] + received[1]) == sorted(payloads)
    assert received[0] and received[1], f"one member got everything: {received}"


def test_sys_broker_version_is_published(mqtt_client, protocol):
    client = mqtt_client(protocol)
    client.connect()
    client.subscribe("$SYS/broker/version", 0)
    # Published every second by the test configuration ([sys] interval_secs = 1).
    message = client.expect_message()
    assert message.topic == "$SYS/broker/version"
    assert message.payload.decode().startswith("wasmq ")
