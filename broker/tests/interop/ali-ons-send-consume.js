'use strict';
// The Node client (npm ali-ons) against mqlab: a push consumer joins, a
// producer sends N messages, every one must come back with its body.
// Run by broker/tests/interop_node_client.rs.
// Usage: node interop.js NAMESRV N
const { Producer, Consumer, Message } = require('ali-ons');
const httpclient = { request: async () => ({ status: 200, data: Buffer.from('') }) };
const nameSrv = process.argv[2];
const n = Number(process.argv[3] || 10);
async function main() {
  const consumer = new Consumer({ httpclient, nameSrv, consumerGroup: 'CG_NODE', accessKey: 'x', secretKey: 'x', isBroadcast: false });
  const got = new Map();
  consumer.subscribe('InteropTopic', '*', async msg => {
    got.set(Array.isArray(msg.keys) ? msg.keys.join(' ') : String(msg.keys), msg.body.toString());
  });
  await consumer.ready();
  await new Promise(r => setTimeout(r, 2000));
  const producer = new Producer({ httpclient, nameSrv, producerGroup: 'PG_NODE', accessKey: 'x', secretKey: 'x' });
  await producer.ready();
  for (let i = 0; i < n; i++) {
    const msg = new Message('InteropTopic', 'TagN', `node-body-${i}`);
    msg.keys = [ `node-key-${i}` ];
    const r = await producer.send(msg);
    console.log(`sent ${i} ${r.sendStatus} ${r.msgId}`);
  }
  const t = Date.now();
  while (got.size < n && Date.now() - t < 30000) await new Promise(r => setTimeout(r, 100));
  for (const [k, v] of [...got.entries()].sort()) console.log(`got ${k} ${v}`);
  await producer.close();
  await consumer.close();
  process.exit(0);
}
main().catch(e => { console.error('FAILED', e); process.exit(1); });
