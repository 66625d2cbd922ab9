// Workers pass: test/run.sh runs this file again with ECP_TEST_WORKERS=2 (the proxy as the CLI with --workers 2).
// etcd 3.5 pass: test/run.sh runs this file again against etcd 3.5 (ETCD_BIN_DIR), to compare the proxy in front of it with etcd 3.5 itself.
// Integration (real etcd, real etcdctl): the same etcdctl session, run against
// one fresh etcd directly and against another fresh etcd through the proxy,
// prints the same thing once the values that must differ are normalised.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startEtcd, type EtcdServer } from '../support/etcd';
import { etcdctl, type EtcdctlResult } from '../support/etcdctl';
import { startTestProxy, type TestProxy } from '../support/proxy';

interface Step {
  readonly args: readonly string[];
  readonly stdin?: string;
  /** For `watch`: stop after this long without output; compare stdout only. */
  readonly quietMs?: number;
  /** The step is meant to fail (on etcd as well); every other step must succeed. */
  readonly fails?: true;
}

const TXN_SUCCESS = ['value("foo") = "bar-again"', 'ver("foo") = "3"', '', 'put txn-ok yes', 'get foo', '', 'put txn-fail yes', ''];
const TXN_FAILURE = ['c("foo") > "100"', 'm("foo") < "2"', '', 'put txn-ok2 yes', '', 'put txn-fail2 yes', 'del zoo', ''];

/** The session; `$LEASE` stands for the lease the `lease grant` step returned on that side. */
const SESSION: readonly Step[] = [
  { args: ['put', 'foo', 'bar'] },
  { args: ['put', 'foo1', 'bar1'] },
  { args: ['put', 'foo2', 'bar2'] },
  { args: ['put', 'zoo', 'z'] },
  { args: ['put', 'foo', 'bar-again', '--prev-kv'] },
  { args: ['put', 'foo', '--ignore-value', '--prev-kv'] },
  { args: ['get', 'foo'] },
  { args: ['get', 'foo', '-w', 'json'] },
  { args: ['get', 'foo', '--prefix'] },
  { args: ['get', 'foo', 'foo2'] },
  { args: ['get', '--from-key', 'foo1'] },
  { args: ['get', 'foo', '--prefix', '--limit=2', '-w', 'json'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=MODIFY', '--order=DESCEND'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=VALUE', '--order=ASCEND'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=CREATE', '--order=DESCEND', '--limit=2'] },
  { args: ['get', 'foo', '--prefix', '--keys-only'] },
  { args: ['get', 'foo', '--rev=2'] },
  { args: ['get', 'foo', '--prefix', '--print-value-only'] },
  { args: ['get', 'nothing-here', '-w', 'json'] },
  { args: ['watch', 'foo', '--rev=1'], quietMs: 1_000 },
  { args: ['watch', 'foo', '--prefix', '--rev=2', '--prev-kv'], quietMs: 1_000 },
  { args: ['del', 'foo2', '--prev-kv'] },
  { args: ['put', 'p/a', '1'] },
  { args: ['put', 'p/b', '2'] },
  { args: ['del', 'p/', '--prefix', '-w', 'json'] },
  { args: ['del', 'absent'] },
  { args: ['txn'], stdin: `${TXN_SUCCESS.join('\n')}\n` },
  { args: ['txn', '-w', 'json'], stdin: `${TXN_FAILURE.join('\n')}\n` },
  { args: ['get', '', '--prefix', '--keys-only'] },
  { args: ['lease', 'grant', '100'] },
  { args: ['put', 'leased', 'v', '--lease=$LEASE'] },
  { args: ['get', 'leased', '-w', 'json'] },
  { args: ['lease', 'timetolive', '$LEASE', '--keys'] },
  { args: ['lease', 'keep-alive', '--once', '$LEASE'] },
  { args: ['lease', 'list'] },
  { args: ['lease', 'revoke', '$LEASE'] },
  { args: ['lease', 'timetolive', '$LEASE'] },
  { args: ['get', 'leased'] },
  { args: ['put', 'bad-lease', 'v', '--lease=1234abcd'], fails: true },
  { args: ['get', 'foo', '--rev=1000'], fails: true },
  { args: ['compaction', '5'] },
  { args: ['get', 'foo', '--rev=3'], fails: true },
  { args: ['compaction', '4'], fails: true },
  { args: ['watch', 'foo', '--rev=2'], quietMs: 1_000, fails: true },
  { args: ['get', 'foo', '--rev=5', '-w', 'json'] },
  { args: ['member', 'list'] },
  { args: ['member', 'list', '-w', 'json'] },
  { args: ['endpoint', 'status', '-w', 'json'] },
  { args: ['endpoint', 'health'] },
];

const LEASE_GRANTED = /lease ([0-9a-f]+) granted/;

class Side {
  lease: string | null = null;
  constructor(readonly endpoint: string) {}

  async run(step: Step): Promise<EtcdctlResult> {
    const args = step.args.map((arg) => (this.lease === null ? arg : arg.replace('$LEASE', this.lease)));
    const result = await etcdctl(this.endpoint, args, {
      ...(step.stdin === undefined ? {} : { stdin: step.stdin }),
      ...(step.quietMs === undefined ? {} : { quietMs: step.quietMs }),
    });
    const granted = LEASE_GRANTED.exec(result.stdout);
    if (granted?.[1] !== undefined) this.lease = granted[1];
    return result;
  }

  /** Replaces what legitimately differs between two clusters, and nothing else. */
  normalise(text: string): string {
    let out = text;
    if (this.lease !== null) {
      out = out.split(this.lease).join('<lease>');
      out = out.split(BigInt(`0x${this.lease}`).toString()).join('<lease>');
    }
    return out
      // clientv3's own warning lines carry a timestamp and a per-process client id
      .replace(/"ts":"[^"]*"/g, '"ts":"<time>"')
      .replace(/client-[0-9a-f-]{36}/g, 'client-<uuid>')
      // etcdctl 3.5's warnings name its resolver by a Go pointer, per process
      .replace(/etcd-endpoints:\/\/0x[0-9a-f]+\//g, 'etcd-endpoints://<resolver>/')
      .replace(/"(cluster_id|member_id|raft_term|ID|leader|raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse)":\d+/g, '"$1":<n>')
      .replace(/\b[0-9a-f]{12,16}\b/g, '<member-id>')
      .replace(/http:\/\/(127\.0\.0\.1|localhost):\d+/g, '<url>')
      .replace(/127\.0\.0\.1:\d+/g, '<address>')
      .replace(/remaining\(\d+s\)/g, 'remaining(<n>s)')
      .replace(/took = [^\s]+/g, 'took = <duration>')
      .replace(/"Endpoint":"[^"]*"/g, '"Endpoint":"<address>"');
  }
}

describe('etcdctl through the proxy matches etcd directly', () => {
  let direct: EtcdServer;
  let behind: EtcdServer;
  let proxy: TestProxy;

  before(async () => {
    [direct, behind] = await Promise.all([startEtcd(), startEtcd()]);
    proxy = await startTestProxy([behind.clientUrl]);
  });
  after(async () => {
    await proxy?.stop();
    await Promise.all([direct?.stop(), behind?.stop()]);
  });

  it('prints the same for a whole session of commands', async () => {
    const a = new Side(direct.clientAddress);
    const b = new Side(proxy.address);
    for (const step of SESSION) {
      const [fromEtcd, fromProxy] = [await a.run(step), await b.run(step)];
      const label = `etcdctl ${step.args.join(' ')}`;
      assert.equal(b.normalise(fromProxy.stdout), a.normalise(fromEtcd.stdout), `${label}: stdout`);
      if (step.fails === undefined) assert.equal(fromEtcd.code === 0 || step.quietMs !== undefined, true, `${label} failed on etcd: ${fromEtcd.stderr}`);
      if (step.quietMs === undefined) {
        assert.equal(fromProxy.code, fromEtcd.code, `${label}: exit code`);
        assert.equal(b.normalise(fromProxy.stderr), a.normalise(fromEtcd.stderr), `${label}: stderr`);
      }
    }
  });

  it('reports the proxy, not the members, as every client URL', async () => {
    const listed = await etcdctl(proxy.address, ['member', 'list', '-w', 'json']);
    const members = (JSON.parse(listed.stdout) as { members: { clientURLs: string[]; peerURLs: string[] }[] }).members;
    assert.ok(members.length > 0);
    for (const member of members) {
      assert.deepEqual(member.clientURLs, [proxy.url]);
      assert.deepEqual(member.peerURLs, [behind.peerUrl]);
    }
  });
});
