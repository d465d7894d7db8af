// Transform example: stamps every message with the user property
// `wasmq-plugin=stamp`; when the settings `rewrite_from` and `rewrite_to` are
// set, rewrites that topic prefix (`rewrite_from = "legacy/"`,
// `rewrite_to = "v2/"` turns `legacy/a` into `v2/a`); when `drop_prefix` is
// set, drops the messages whose topic starts with it.
//
// It exports `transform-batch`: the broker hands it the PUBLISHes of one read
// in one call, and it answers each with a narrow edit (a property appended, a
// topic), so the message itself is never copied back.
//
// The same behaviour as plugins/examples/rust/stamp.

import { get } from "wasmq:plugin/config@0.2.0";

/**
 * The settings, read once per instance (on its first call: the module's top
 * level runs when the component is built, not in the broker). Settings only
 * change with a reload, which makes new instances.
 */
let settings;
function read() {
  settings ??= { from: get("rewrite_from"), to: get("rewrite_to"), drop: get("drop_prefix") };
  return settings;
}

function edit(message) {
  const { from, to, drop } = read();
  if (drop !== undefined && message.topic.startsWith(drop)) {
    return { tag: "drop", val: `under ${drop}` };
  }
  let topic; // undefined: the topic stays
  if (from !== undefined && to !== undefined && message.topic.startsWith(from)) {
    topic = to + message.topic.slice(from.length);
  }
  return { tag: "change", val: { topic, addUserProperties: [["wasmq-plugin", "stamp"]] } };
}

export const transformBatch = {
  onPublishBatch(_client, messages) {
    return messages.map(edit);
  },
};
