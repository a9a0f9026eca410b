// Publish one message over WebSocket and wait for the QoS flow to complete.
// --url ws://... --topic T --message M --qos Q [--retain true] [--version 4|5]
import { args, connect, deadline, emit, fail } from "./common.mjs";

const a = args();
deadline(10);
try {
  const [client] = await connect(a);
  await client.publishAsync(a.topic, a.message ?? "", { qos: Number(a.qos || 0), retain: a.retain === "true" });
  await client.endAsync();
  emit({ event: "result", ok: true });
  process.exit(0);
} catch (e) {
  fail(e);
}
