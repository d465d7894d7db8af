"""Transform example: stamps every message with the user property
`wasmq-plugin=stamp`, and, when the settings `rewrite_from` and `rewrite_to`
are set, rewrites that topic prefix (`rewrite_from = "legacy/"`,
`rewrite_to = "v2/"` turns `legacy/a` into `v2/a`).

The same behaviour as plugins/examples/rust/stamp.
"""

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.types import Client, Message, Transformed, Transformed_Replace


class Transform(exports.Transform):
    def on_publish(self, c: Client, m: Message) -> Transformed:
        rewrite_from = config.get("rewrite_from")
        rewrite_to = config.get("rewrite_to")
        if (
            rewrite_from is not None
            and rewrite_to is not None
            and m.topic.startswith(rewrite_from)
        ):
            m.topic = rewrite_to + m.topic[len(rewrite_from) :]
        m.user_properties.append(("wasmq-plugin", "stamp"))
        return Transformed_Replace(m)
