import { etcdMethod, type EtcdServiceName } from './proto';

/**
 * What one call does to the cluster. A `write` changes something etcd keeps
 * (keys, leases, members, alarms, users and roles, auth on/off, which member
 * leads, the version the cluster runs at, the backend's layout): read-only
 * mode and a lost upstream refuse it before it leaves the proxy. A `read`
 * changes nothing and may be retried on another member. A `login` changes
 * nothing either (it asks etcd for a token): a read-only proxy must still
 * let its clients log in to read, and during an outage the offline login
 * answers it where configured.
 */
export type MethodKind = 'read' | 'write' | 'login';

/** A method whose kind depends on its request (a Txn with or without a write, an Alarm that lists or sets). */
type RequestRule = (request: Buffer) => Exclude<MethodKind, 'login'>;
type MethodRule = MethodKind | RequestRule;

/** The fields of a Txn request that tell whether it writes. */
export interface TxnShape {
  readonly success?: readonly TxnOpShape[];
  readonly failure?: readonly TxnOpShape[];
}
export interface TxnOpShape {
  readonly request_range?: object;
  readonly request_txn?: TxnShape;
}

/** A Txn whose branches hold only Range ops (nested Txns included) is a read; an op of no known kind is not. */
export function txnReadsOnly(txn: TxnShape): boolean {
  return [...(txn.success ?? []), ...(txn.failure ?? [])].every((op) =>
    op.request_range !== undefined ? true : op.request_txn !== undefined ? txnReadsOnly(op.request_txn) : false,
  );
}

/** Decodes the request with the method's own codec; bytes that do not decode are a write (etcd answers them, the proxy does not judge). */
function byRequest(service: EtcdServiceName, method: string, isRead: (decoded: object) => boolean): RequestRule {
  const definition = etcdMethod(service, method);
  return (request) => {
    try {
      return isRead(definition.requestDeserialize(request)) ? 'read' : 'write';
    } catch {
      return 'write';
    }
  };
}

/**
 * Every method of every etcd v3 service in proto/, read or write, as etcd
 * itself treats it. A method missing here is a write: a newer .proto's
 * method is refused in read-only mode until someone decides it reads.
 *
 * Choices worth knowing:
 * * Alarm with action GET (proto3's zero, so also an absent action) only
 *   lists alarms; ACTIVATE and DEACTIVATE set and clear them (DEACTIVATE of
 *   NOSPACE re-enables writes cluster-wide), and an action this .proto does
 *   not name is a write.
 * * Defragment rewrites a member's backend and blocks it meanwhile;
 *   MoveLeader and Downgrade change the cluster: writes.
 * * Snapshot, Hash, HashKV and Status only read (Snapshot streams the whole
 *   backend out; it changes nothing).
 * * LeaseTimeToLive and LeaseLeases only read (etcd answers them from its
 *   lessor without a raft entry); Grant, Revoke and KeepAlive write.
 * * Watch only reads.
 */
const METHOD_KINDS: Readonly<Record<EtcdServiceName, Readonly<Record<string, MethodRule>>>> = {
  'etcdserverpb.KV': {
    Range: 'read',
    Put: 'write',
    DeleteRange: 'write',
    Txn: byRequest('etcdserverpb.KV', 'Txn', (txn) => txnReadsOnly(txn as TxnShape)),
    Compact: 'write',
  },
  'etcdserverpb.Watch': { Watch: 'read' },
  'etcdserverpb.Lease': {
    LeaseGrant: 'write',
    LeaseRevoke: 'write',
    LeaseKeepAlive: 'write',
    LeaseTimeToLive: 'read',
    LeaseLeases: 'read',
  },
  'etcdserverpb.Cluster': {
    MemberAdd: 'write',
    MemberRemove: 'write',
    MemberUpdate: 'write',
    MemberList: 'read',
    MemberPromote: 'write',
  },
  'etcdserverpb.Maintenance': {
    Alarm: byRequest('etcdserverpb.Maintenance', 'Alarm', (alarm) => {
      const action = (alarm as { action?: string | number }).action;
      return action === undefined || action === 'GET' || action === 0;
    }),
    Status: 'read',
    Defragment: 'write',
    Hash: 'read',
    HashKV: 'read',
    Snapshot: 'read',
    MoveLeader: 'write',
    Downgrade: 'write',
  },
  'etcdserverpb.Auth': {
    AuthEnable: 'write',
    AuthDisable: 'write',
    AuthStatus: 'read',
    Authenticate: 'login',
    UserAdd: 'write',
    UserGet: 'read',
    UserList: 'read',
    UserDelete: 'write',
    UserChangePassword: 'write',
    UserGrantRole: 'write',
    UserRevokeRole: 'write',
    RoleAdd: 'write',
    RoleGet: 'read',
    RoleList: 'read',
    RoleDelete: 'write',
    RoleGrantPermission: 'write',
    RoleRevokePermission: 'write',
  },
};

const ALWAYS_WRITE: RequestRule = () => 'write';

/**
 * How to tell one method's calls apart: asked with each request. Resolved
 * once per method, so the per-call cost is a decode only where the kind
 * depends on the request.
 */
export function requestKind(service: EtcdServiceName, method: string): (request: Buffer) => MethodKind {
  const rule = Object.hasOwn(METHOD_KINDS[service], method) ? METHOD_KINDS[service][method] : undefined;
  if (rule === undefined) return ALWAYS_WRITE;
  return typeof rule === 'function' ? rule : () => rule;
}

/**
 * The kind of a streaming method, which has no single request to look at:
 * one whose kind would depend on its requests is a write.
 */
export function streamKind(service: EtcdServiceName, method: string): MethodKind {
  const rule = Object.hasOwn(METHOD_KINDS[service], method) ? METHOD_KINDS[service][method] : undefined;
  return typeof rule === 'string' ? rule : 'write';
}

/** The methods the table names, per service: for the test that holds it against proto/. */
export function classifiedMethods(service: EtcdServiceName): readonly string[] {
  return Object.keys(METHOD_KINDS[service]);
}
