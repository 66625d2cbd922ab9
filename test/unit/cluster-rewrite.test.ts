// Unit: MemberList answers keep clients on the proxy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { rewriteClientUrls } from '../../src/core/cluster';
import { serviceMethods } from '../../src/etcd/proto';

describe('rewriteClientUrls', () => {
  it('replaces every client URL with the advertised one and keeps the rest real', () => {
    const memberList = serviceMethods('etcdserverpb.Cluster').MemberList;
    assert.ok(memberList !== undefined);
    const upstream = memberList.responseSerialize({
      header: { cluster_id: '17237436991929493444', member_id: '9372538179322589801', raft_term: '2' },
      members: [
        { ID: '9372538179322589801', name: 'a', peerURLs: ['http://10.0.0.1:2380'], clientURLs: ['http://10.0.0.1:2379', 'http://a.local:2379'] },
        { ID: '10501334649042878790', name: 'b', peerURLs: ['http://10.0.0.2:2380'], clientURLs: ['http://10.0.0.2:2379'] },
        { ID: '18249187646912138824', name: '', peerURLs: ['http://10.0.0.3:2380'], isLearner: true },
      ],
    });
    const decoded = memberList.responseDeserialize(upstream) as Parameters<typeof rewriteClientUrls>[0];
    const rewritten = memberList.responseDeserialize(
      memberList.responseSerialize(rewriteClientUrls(decoded, 'http://127.0.0.1:23790')),
    ) as { header: { cluster_id: string }; members: { ID: string; name: string; peerURLs: string[]; clientURLs?: string[]; isLearner?: boolean }[] };
    assert.equal(rewritten.header.cluster_id, '17237436991929493444');
    assert.deepEqual(
      rewritten.members.map((m) => [m.ID, m.name, m.peerURLs, m.clientURLs ?? [], m.isLearner ?? false]),
      [
        ['9372538179322589801', 'a', ['http://10.0.0.1:2380'], ['http://127.0.0.1:23790'], false],
        ['10501334649042878790', 'b', ['http://10.0.0.2:2380'], ['http://127.0.0.1:23790'], false],
        // added but not started: it serves no clients, so it advertises none
        ['18249187646912138824', '', ['http://10.0.0.3:2380'], [], true],
      ],
    );
  });
});
