'use strict';
// The Node client (npm ali-ons) against mqlab: a push consumer joins, a
// producer sends N messages with keys and tags, the consumer must get
// every one back. Prints what the client was told and what it received.
// Run by workloads/tests/interop_node_client.rs.
// Usage: node ali-ons-send-consume.js NAMESRV N
const { Producer, Consumer, Message } = require('ali-ons');
const httpclient = { request: async () => ({ status: 200, data: Buffer.from('') }) };
const nameSrv = process.argv[2];
const n = Number(process.argv[3] || 10);
async function main() {
  const consumer = new Consumer({ httpclient, nameSrv, consumerGroup: 'CG_NODE', accessKey: 'x', secretKey: 'x', isBroadcast: false });
  const got = new Map();
  consumer.subscribe('InteropTopic', '*', async msg => {
    const keys = Array.isArray(msg.keys) ? msg.keys.join(' ') : String(msg.keys);
    got.set(msg.msgId, `${keys} ${msg.tags} ${msg.body.toString()}`);
  });
  await consumer.ready();
  await new Promise(r => setTimeout(r, 2000));
  const producer = new Producer({ httpclient, nameSrv, producerGroup: 'PG_NODE', accessKey: 'x', secretKey: 'x' });
  await producer.ready();
  for (let i = 0; i < n; i++) {
    const msg = new Message('InteropTopic', i % 2 ? 'TagB' : 'TagA', `node-body-${i}`);
    msg.keys = [ `node-key-${i}` ];
    const r = await producer.send(msg);
    console.log(`sent ${i} ${r.sendStatus} ${r.msgId} ${r.messageQueue.queueId} ${r.queueOffset}`);
  }
  const t = Date.now();
  while (got.size < n && Date.now() - t < 30000) await new Promise(r => setTimeout(r, 100));
  for (const [id, v] of [...got.entries()].sort()) console.log(`got ${id} ${v}`);
  await producer.close();
  await consumer.close();
  process.exit(0);
}
main().catch(e => { console.error('FAILED', e); process.exit(1); });
