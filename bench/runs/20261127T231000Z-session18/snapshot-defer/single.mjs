// usage: node single.mjs port total rooms payloadBytes concurrency — single durable emits (/api/emit)
const [port, total, rooms, size, conc] = process.argv.slice(2).map(Number);
const pad = 'x'.repeat(size);
const url = `http://127.0.0.1:${port}/api/emit`;
let sent = 0, i = 0;
const t0 = Date.now();
async function worker() {
  while (sent < total) {
    sent++;
    const body = JSON.stringify({ room: `r${(i++) % rooms}`, event: 'trade:executed', data: { n: i, pad } });
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body });
    if (r.status !== 200) { console.log(r.status, await r.text()); process.exit(1); }
  }
}
await Promise.all(Array.from({ length: conc }, worker));
console.log(`sent ${sent} in ${(Date.now() - t0) / 1000}s`);
