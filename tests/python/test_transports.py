"""paho-mqtt 2.x over the broker's TLS and WebSocket listeners (the real `wasmq` binary,
certificates from `scripts/make-certs`): a TLS subscriber and a WebSocket subscriber get
what a plain TCP, a TLS and a WebSocket publisher send, in MQTT 3.1.1 and 5.0.
"""

import queue
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import ANSI, REPO, WAIT_SECS, Broker

LISTENER = re.compile(r"listening address=(\S+):(\d+) listener=(\S+) kind=(\S+)")

CONFIG = """\
[sys]
interval_secs = 0

[[listener]]
name = "tcp"
bind = "127.0.0.1:0"

[[listener]]
name = "tls"
bind = "127.0.0.1:0"
kind = "tls"
cert_file = "certs/server.pem"
key_file = "certs/server.key"

[[listener]]
name = "ws"
bind = "127.0.0.1:0"
kind = "ws"

[[listener]]
name = "wss"
bind = "127.0.0.1:0"
kind = "wss"
cert_file = "certs/server.pem"
key_file = "certs/server.key"
"""


@pytest.fixture
def listeners():
    """The broker with a tcp, a tls, a ws and a wss listener: {name: (host, port)}, and
    the CA file."""
    with tempfile.TemporaryDirectory(prefix="wasmq-pytest-tls-") as workdir:
        workdir = Path(workdir)
        subprocess.run(
            [str(REPO / "scripts" / "make-certs"), str(workdir / "certs")],
            check=True,
            capture_output=True,
        )
        broker = Broker(workdir, CONFIG)
        try:
            found = {}
            for line in ANSI.sub("", broker.log()).splitlines():
                match = LISTENER.search(line)
                if match:
                    found[match.group(3)] = (match.group(1), int(match.group(2)))
            assert set(found) == {"tcp", "tls", "ws", "wss"}, broker.log()
            yield found, workdir / "certs" / "ca.pem"
        finally:
            code = broker.stop()
            assert code == 0, f"wasmq exited with {code}:\n{broker.log()}"


def client(kind, listeners, ca, protocol, client_id):
    """A connected paho client on listener `kind`, its messages in `client.messages`."""
    found, _ = listeners
    host, port = found[kind]
    transport = "websockets" if kind in ("ws", "wss") else "tcp"
    paho = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        transport=transport,
    )
    if kind in ("tls", "wss"):
        paho.tls_set(ca_certs=str(ca))
    if transport == "websockets":
        paho.ws_set_options(path="/mqtt")
    paho.messages = queue.Queue()
    connected = threading.Event()
    subscribed = threading.Event()
    paho.on_connect = lambda *_args: connected.set()
    paho.on_subscribe = lambda *_args: subscribed.set()
    paho.on_message = lambda _c, _u, message: paho.messages.put(message)
    paho.connect(host, port, 30)
    paho.loop_start()
    assert connected.wait(WAIT_SECS), f"{client_id}: no CONNACK over {kind}"
    paho.subscribed = subscribed
    return paho


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_tls_and_websocket_clients_exchange_messages(listeners, protocol):
    _, ca = listeners
    subscribers = {
        kind: client(kind, listeners, ca, protocol, f"sub-{kind}") for kind in ("tls", "ws", "wss")
    }
    publishers = {
        kind: client(kind, listeners, ca, protocol, f"pub-{kind}")
        for kind in ("tcp", "tls", "ws", "wss")
    }
    try:
        for kind, subscriber in subscribers.items():
            subscriber.subscribe("transports/#", 1)
            assert subscriber.subscribed.wait(WAIT_SECS), f"no SUBACK over {kind}"
        for kind, publisher in publishers.items():
            info = publisher.publish(f"transports/{kind}", f"from {kind}".encode(), 1)
            info.wait_for_publish(WAIT_SECS)
            assert info.is_published(), f"publish over {kind} not acknowledged"
        for kind, subscriber in subscribers.items():
            got = set()
            for _ in publishers:
                message = subscriber.messages.get(timeout=WAIT_SECS)
                got.add((message.topic, message.payload))
            expected = {(f"transports/{k}", f"from {k}".encode()) for k in publishers}
            assert got == expected, f"subscriber over {kind}"
    finally:
        for paho in [*subscribers.values(), *publishers.values()]:
            paho.disconnect()
            paho.loop_stop()
