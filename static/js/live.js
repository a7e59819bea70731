// The live connection: one WebSocket to /ws (protocol v2, see src/web/ws.rs), reconnecting with
// backoff; each message goes to the page's handlers.

import { setConnection } from "./chrome.js";

/**
 * `handlers`: `open(socket)` once connected, `snapshot(message)`, `update(update)` for each
 * update of a batch, `status(message)`.
 */
export function connect(handlers, delay = 500) {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onopen = () => {
    setConnection(true);
    delay = 500;
    handlers.open?.(socket);
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") handlers.snapshot(message);
    else if (message.type === "batch") message.updates.forEach(handlers.update);
    else if (message.type === "status") handlers.status(message);
  };
  socket.onclose = () => {
    setConnection(false);
    setTimeout(() => connect(handlers, Math.min(delay * 2, 15000)), delay);
  };
}
