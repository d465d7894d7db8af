"""`{{name}}`: a Wasmq transform plugin (the `transform` hook, called on every
authorized PUBLISH before it is routed).

What it starts with, to replace with yours: a message published under the
setting `drop_prefix` (default `private/`) is dropped; every other message gets
the MQTT 5 user property `via={{name}}`, appended after the client's own.
"""

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import (
    Client,
    Message,
    Transformed,
    Transformed_Drop,
    Transformed_Replace,
)

# Read on the first message: settings only change with a reload, which makes
# new instances.
_drop_prefix = None


def drop_prefix() -> str:
    global _drop_prefix
    if _drop_prefix is None:
        _drop_prefix = config.get("drop_prefix") or "private/"
    return _drop_prefix


class Transform(exports.Transform):
    def on_publish(self, c: Client, m: Message) -> Transformed:
        if m.topic.startswith(drop_prefix()):
            return Transformed_Drop(f"{m.topic} is private")
        m.user_properties.append(("via", "{{name}}"))
        return Transformed_Replace(m)
