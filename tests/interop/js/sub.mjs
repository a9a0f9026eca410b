// Subscribe over WebSocket and collect messages.
// --url ws://... --topic T --qos Q [--version 4|5] [--count N] [--wait SECONDS]
// [--client-id ID --clean true|false --session-expiry S]
// Prints {"event":"subscribed",...} once the SUBACK is in, then {"event":"result",...}.
import { args, connect, deadline, emit, fail } from "./common.mjs";

const a = args();
const count = Number(a.count || 1);
const wait = Number(a.wait || 5);
deadline(wait + 10);
try {
  const [client, connack, messages] = await connect(a);
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    client.end(false, {}, () => {
      emit({ event: "result", ok: true, sessionPresent: connack.sessionPresent, messages });
      process.exit(0);
    });
  };
  let subscribed = false; // finish only after the SUBACK, even if queued messages came first
  client.on("collected", (n) => {
    if (subscribed && n >= count) finish();
  });
  const granted = await client.subscribeAsync(a.topic, { qos: Number(a.qos || 0) });
  subscribed = true;
  emit({ event: "subscribed", sessionPresent: connack.sessionPresent, granted: granted.map((g) => g.qos) });
  if (messages.length >= count) finish();
  setTimeout(finish, wait * 1000);
} catch (e) {
  fail(e);
}
