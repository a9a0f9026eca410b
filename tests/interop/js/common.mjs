// Shared by the MQTT.js scenario scripts: loads MQTT.js from tests/node/node_modules, parses
// --key value arguments, prints one JSON object per line (the last one is the result), and
// bounds every scenario with a deadline so nothing hangs.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "node", "package.json"));
export const mqtt = require("mqtt");

export function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--")) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

export function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

export function deadline(seconds) {
  setTimeout(() => {
    emit({ event: "result", ok: false, error: `deadline of ${seconds}s passed` });
    process.exit(2);
  }, seconds * 1000).unref();
}

// Connect and resolve with [client, connack, messages]; no automatic reconnects. The message
// listener is attached before CONNECT: a resumed session's queued messages can arrive in the
// same read as the CONNACK, before an await after connect() would return.
export function connect(a, extra = {}) {
  const opts = {
    protocolVersion: Number(a.version || 4),
    clientId: a["client-id"] || `js-${process.pid}-${Date.now() % 100000}`,
    clean: (a.clean || "true") === "true",
    keepalive: Number(a.keepalive || 30),
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...extra,
  };
  if (a["session-expiry"]) opts.properties = { sessionExpiryInterval: Number(a["session-expiry"]) };
  if (a["topic-alias-max"]) {
    opts.properties = { ...opts.properties, topicAliasMaximum: Number(a["topic-alias-max"]) };
  }
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(a.url, opts);
    const messages = [];
    client.on("message", (topic, payload, packet) => {
      messages.push(message(topic, payload, packet));
      client.emit("collected", messages.length);
    });
    client.once("connect", (connack) => resolve([client, connack, messages]));
    client.once("error", reject);
  });
}

export function message(topic, payload, packet) {
  return {
    topic,
    payload: payload.toString(),
    qos: packet.qos,
    retain: packet.retain,
    dup: packet.dup,
    subscriptionIds: packet.properties?.subscriptionIdentifier ?? null,
    topicAlias: packet.properties?.topicAlias ?? null,
  };
}

export function fail(err) {
  emit({ event: "result", ok: false, error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
}
