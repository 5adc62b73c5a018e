// The chat page's client: one WebSocket per joined room; every line the room publishes is appended to the log.
let socket = null;
const log = document.getElementById("log");

function show(text) {
  const item = document.createElement("li");
  item.textContent = text; // text, never HTML: what others type cannot run here
  log.appendChild(item);
}

document.getElementById("join").addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket) socket.close();
  const room = encodeURIComponent(document.getElementById("room").value);
  const name = encodeURIComponent(document.getElementById("name").value);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/${room}?name=${name}`);
  socket.onmessage = (message) => show(message.data);
  socket.onclose = () => show("* disconnected");
  document.getElementById("say").hidden = false;
});

document.getElementById("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = document.getElementById("text");
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(text.value);
  text.value = "";
});
