// Connect over WebSocket with a will, then vanish without DISCONNECT (the process exits and
// the TCP connection under the WebSocket closes), so the broker must publish the will.
// --url ws://... --will-topic T --will-payload P [--will-qos Q] [--version 4|5]
import { args, connect, deadline, emit, fail } from "./common.mjs";

const a = args();
deadline(10);
try {
  const [client] = await connect(a, {
    will: { topic: a["will-topic"], payload: a["will-payload"], qos: Number(a["will-qos"] || 0), retain: false },
  });
  emit({ event: "result", ok: true, connected: client.connected });
  client.stream.destroy();
  process.exit(0);
} catch (e) {
  fail(e);
}
