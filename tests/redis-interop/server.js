// A Node Socket.IO server as the seed runs it: socket.io + @socket.io/redis-adapter on
// one Redis. tests/redis_interop.rs starts it next to a raftcast node on the same Redis.
//
// env: PORT (HTTP + Socket.IO), REDIS_URL.
// A socket joins the rooms listed in its handshake auth `rooms`.
// POST /emit {"room", "event", "data"} broadcasts io.to(room).emit(event, data).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.env.PORT || 0);
const url = process.env.REDIS_URL || "redis://127.0.0.1:6379";

async function main() {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (e) => console.error("redis error:", e.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const server = http.createServer((req, res) => {
    if (req.method === "POST" && req.url === "/emit") {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        try {
          const { room, event, data } = JSON.parse(body);
          io.to(room).emit(event, data);
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ ok: true }));
        } catch (e) {
          res.writeHead(400);
          res.end(String(e));
        }
      });
      return;
    }
    if (req.url === "/ready") {
      res.writeHead(200);
      res.end("ok");
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const io = new Server(server, { adapter: createAdapter(pub, sub) });
  io.on("connection", (socket) => {
    const rooms = (socket.handshake.auth && socket.handshake.auth.rooms) || [];
    socket.join(rooms);
    socket.emit("joined", { rooms, id: socket.id });
  });
  server.listen(port, "127.0.0.1", () => {
    console.log(`node socket.io server listening on ${server.address().port}`);
  });
  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
