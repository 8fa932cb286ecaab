// usage: node fill.mjs port total rooms payloadBytes
const [port, total, rooms, size] = process.argv.slice(2).map(Number);
const pad = 'x'.repeat(size);
const url = `http://127.0.0.1:${port}/api/emit/batch`;
let sent = 0, i = 0;
const t0 = Date.now();
async function worker() {
  while (sent < total) {
    const emits = [];
    for (let k = 0; k < 50 && sent < total; k++, sent++) {
      emits.push({ room: `r${(i++) % rooms}`, event: 'trade:executed', data: { n: i, pad } });
    }
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body: JSON.stringify({ emits }) });
    if (r.status !== 200) { console.log(r.status, await r.text()); process.exit(1); }
  }
}
await Promise.all([worker(), worker(), worker(), worker()]);
console.log(`sent ${sent} in ${(Date.now() - t0) / 1000}s`);
