// Over WebSocket over TLS: connect (verifying the server against --ca), subscribe, publish to
// the same topic, and report what came back.
// --url wss://... --ca FILE --topic T --qos Q [--version 4|5]
import fs from "node:fs";
import { args, connect, deadline, emit, fail } from "./common.mjs";

const a = args();
deadline(15);
try {
  const [client, , messages] = await connect(a, { ca: fs.readFileSync(a.ca), rejectUnauthorized: true });
  await client.subscribeAsync(a.topic, { qos: Number(a.qos || 0) });
  const got = new Promise((resolve) => client.once("collected", resolve));
  await client.publishAsync(a.topic, "over wss", { qos: Number(a.qos || 0) });
  await got;
  await client.endAsync();
  emit({ event: "result", ok: true, messages });
  process.exit(0);
} catch (e) {
  fail(e);
}
