// Integration (real etcd, a real S3-compatible server: s3rver on loopback): a proxy that started on an
// empty data dir while etcd was down serves the bucket's snapshot marked stale; when etcd answers again,
// no answer it gives without the stale mark is older than etcd was then. Found by the robustness run's
// bucket-fallback fault: a machine replaced during the outage served the snapshot's revision unmarked in
// the moments between etcd answering and the mirror catching up, below what its predecessor had answered
// (and below writes acknowledged through it) to clients that kept their connection to its address.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SnapshotBucket } from '../../src/objectstore/bucket';
import { readLatest } from '../../src/objectstore/publish';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { startTestProxy } from '../support/proxy';
import { call, rawClients, type RawClients } from '../support/raw-client';
import { openTestBucket, startS3Server, useS3Credentials, type S3Server } from '../support/s3';
import { until, untilValue } from '../support/until';

const b = (s: string): Buffer => Buffer.from(s);

interface Answer {
  readonly revision: number;
  readonly stale: boolean;
}

async function read(clients: RawClients): Promise<Answer | null> {
  const reply = await call<{ header: { revision: string } }>(clients.kv, 'Range', { key: b('/apisix/'), range_end: b('/apisix0'), serializable: true }, { deadlineMs: 2_000 });
  if (reply.error !== null) return null;
  return { revision: Number(reply.response?.header.revision), stale: reply.headers?.get('x-etcd-cache-proxy-stale')[0] === 'true' };
}

describe('a proxy serving the bucket\'s snapshot when etcd answers again', () => {
  let s3: S3Server;
  let etcd: EtcdServer;
  let direct: RawClients;
  let bucket: SnapshotBucket;
  let restoreEnvironment = (): void => undefined;

  before(async () => {
    restoreEnvironment = useS3Credentials();
    s3 = await startS3Server();
    bucket = openTestBucket(s3, 'proxy');
    etcd = await startEtcd();
    direct = rawClients(etcd.clientAddress);
  });
  after(async () => {
    direct?.close();
    bucket?.close();
    await etcd?.stop();
    await s3?.close();
    restoreEnvironment();
  });

  const put = async (key: string, value: string): Promise<number> => {
    const answer = await call<{ header: { revision: string } }>(direct.kv, 'Put', { key: b(key), value: b(value) });
    assert.equal(answer.error, null);
    return Number(answer.response?.header.revision);
  };

  it('answers unmarked only at or above the revision etcd had when it came back', async () => {
    await put('/apisix/routes/1', 'one');
    const publisher = await startTestProxy([etcd.clientUrl], [...s3.flags(), '--snapshot-publish', '--snapshot-interval', '200ms']);
    let published: number;
    try {
      const target = await put('/apisix/routes/2', 'two');
      published = await untilValue('latest to name the last write', async () => {
        const revision = Number((await readLatest(bucket))?.revision ?? 0);
        return revision >= target ? revision : undefined;
      });
    } finally {
      await publisher.stop();
    }
    // What etcd (and any proxy in front of it) answered after the snapshot, before the outage.
    let newest = published;
    for (let i = 0; i < 20; i += 1) newest = await put(`/apisix/routes/${i % 4}`, `after-${i}`);
    etcd.signal('SIGKILL');

    // A machine replaced during the outage: an empty data dir.
    const follower = await startTestProxy([etcd.clientUrl], [...s3.flags(), '--upstream-timeout', '1s']);
    const clients = rawClients(follower.address);
    try {
      const stale = await untilValue('the follower to serve the published snapshot', async () => {
        const answer = await read(clients);
        return answer?.stale === true ? answer : undefined;
      });
      assert.equal(stale.revision, published);

      await etcd.restart();
      // Every answer from etcd's return until the follower is fresh at etcd's revision, read back to back.
      const answers: Answer[] = [];
      await until('the follower to answer fresh at etcd\'s revision', async () => {
        for (let i = 0; i < 20; i += 1) {
          const answer = await read(clients);
          if (answer !== null) answers.push(answer);
        }
        const last = answers.at(-1);
        return last !== undefined && !last.stale && last.revision >= newest;
      });
      const behind = answers.filter((answer) => !answer.stale && answer.revision < newest);
      assert.deepEqual(behind, [], `${behind.length} of ${answers.length} answers after etcd came back were unmarked below its revision ${newest}`);
    } finally {
      clients.close();
      await follower.stop();
    }
  });
});
