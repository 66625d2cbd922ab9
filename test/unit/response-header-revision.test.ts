// Unit (no network): the header's revision read straight from an answer's bytes, as etcd encodes answers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { etcdMethod } from '../../src/etcd/proto';
import { readHeaderRevision } from '../../src/etcd/response-bytes';

describe('readHeaderRevision', () => {
  const range = etcdMethod('etcdserverpb.KV', 'Range');
  const put = etcdMethod('etcdserverpb.KV', 'Put');

  it('reads the revision of any response, whatever else it holds', () => {
    for (const revision of [1, 127, 128, 300_000, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      const header = { cluster_id: '14841639068965178418', member_id: '10276657743932975437', revision: String(revision), raft_term: '7' };
      assert.equal(readHeaderRevision(range.responseSerialize({ header, kvs: [{ key: Buffer.from('k'), value: Buffer.alloc(300, 1), mod_revision: '5' }], count: '1' })), revision);
      assert.equal(readHeaderRevision(range.responseSerialize({ header, count: '12345' })), revision);
      assert.equal(readHeaderRevision(put.responseSerialize({ header, prev_kv: { key: Buffer.from('k') } })), revision);
    }
  });

  it('is 0 without a header or revision, and refuses truncated bytes', () => {
    assert.equal(readHeaderRevision(Buffer.alloc(0)), 0);
    assert.equal(readHeaderRevision(range.responseSerialize({ header: { cluster_id: '1' }, count: '3' })), 0);
    const whole = range.responseSerialize({ header: { revision: '99' }, count: '3' });
    assert.throws(() => readHeaderRevision(whole.subarray(0, 3)));
  });
});
