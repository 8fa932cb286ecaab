// usage: node batchlat.mjs port requests
const [port, n] = process.argv.slice(2).map(Number);
const url = `http://127.0.0.1:${port}/api/emit/batch`;
const emits = Array.from({ length: 50 }, (_, i) => ({ room: `r${i % 10}`, event: 'trade:executed', data: { i, pad: 'x'.repeat(200) } }));
const body = JSON.stringify({ emits });
const times = [];
for (let k = 0; k < n; k++) {
  const t0 = process.hrtime.bigint();
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body });
  const j = await r.json();
  if (r.status !== 200 || j.ok !== 50) { console.log(r.status, JSON.stringify(j).slice(0, 200)); process.exit(1); }
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
console.log(`batches of 50: p50 ${times[n >> 1].toFixed(2)} ms, p90 ${times[Math.floor(n * 0.9)].toFixed(2)} ms, mean ${(times.reduce((a, b) => a + b) / n).toFixed(2)} ms`);
