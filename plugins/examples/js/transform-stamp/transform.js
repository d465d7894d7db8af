// Transform example: stamps every message with the user property
// `wasmq-plugin=stamp`, and, when the settings `rewrite_from` and `rewrite_to`
// are set, rewrites that topic prefix (`rewrite_from = "legacy/"`,
// `rewrite_to = "v2/"` turns `legacy/a` into `v2/a`).
//
// The same behaviour as plugins/examples/rust/stamp.

import { get } from "wasmq:plugin/config@0.2.0";

export const transform = {
  onPublish(_client, message) {
    const from = get("rewrite_from");
    const to = get("rewrite_to");
    if (from !== undefined && to !== undefined && message.topic.startsWith(from)) {
      message.topic = to + message.topic.slice(from.length);
    }
    message.userProperties.push(["wasmq-plugin", "stamp"]);
    return { tag: "replace", val: message };
  },
};
