"""Transform example: stamps every message with the user property
`wasmq-plugin=stamp`; when the settings `rewrite_from` and `rewrite_to` are
set, rewrites that topic prefix (`rewrite_from = "legacy/"`,
`rewrite_to = "v2/"` turns `legacy/a` into `v2/a`); when `drop_prefix` is set,
drops the messages whose topic starts with it.

It exports `transform-batch`: the broker hands it the PUBLISHes of one read in
one call, and it answers each with a narrow edit (a property appended, a
topic), so the message itself is never copied back.

The same behaviour as plugins/examples/rust/stamp.
"""

import functools
from typing import List, Optional, Tuple

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import (
    Change,
    Client,
    Edit,
    Edit_Change,
    Edit_Drop,
    Message,
)

STAMP = ("wasmq-plugin", "stamp")


@functools.cache
def settings() -> Tuple[Optional[Tuple[str, str]], Optional[str]]:
    """The rewrite and the drop prefix, read once per instance (on its first call:
    the module's top level runs when the component is built, not in the broker).
    Settings only change with a reload, which makes new instances."""
    rewrite_from, rewrite_to = config.get("rewrite_from"), config.get("rewrite_to")
    rewrite = None
    if rewrite_from is not None and rewrite_to is not None:
        rewrite = (rewrite_from, rewrite_to)
    return rewrite, config.get("drop_prefix")


def edit(m: Message) -> Edit:
    rewrite, drop_prefix = settings()
    if drop_prefix is not None and m.topic.startswith(drop_prefix):
        return Edit_Drop(f"under {drop_prefix}")
    topic = None
    if rewrite is not None and m.topic.startswith(rewrite[0]):
        topic = rewrite[1] + m.topic[len(rewrite[0]) :]
    return Edit_Change(Change(topic=topic, add_user_properties=[STAMP]))


class TransformBatch(exports.TransformBatch):
    def on_publish_batch(self, c: Client, ms: List[Message]) -> List[Edit]:
        return [edit(m) for m in ms]
