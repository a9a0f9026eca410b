// Connect over WebSocket, subscribe, and stay connected until stdin says "quit" (or closes).
// --url ws://... --client-id ID --topic T --qos Q [--version 4|5]
// Prints {"event":"subscribed"} once the SUBACK is in, then {"event":"result"} at the end.
import { args, connect, deadline, emit, fail } from "./common.mjs";

const a = args();
deadline(Number(a.wait || 60));
try {
  const [client, , messages] = await connect(a);
  await client.subscribeAsync(a.topic, { qos: Number(a.qos || 0) });
  emit({ event: "subscribed" });
  process.stdin.setEncoding("utf8");
  const quit = () => {
    client.end(false, {}, () => {
      emit({ event: "result", ok: true, messages });
      process.exit(0);
    });
  };
  process.stdin.on("data", (d) => {
    if (d.includes("quit")) quit();
  });
  process.stdin.on("end", quit);
} catch (e) {
  fail(e);
}
