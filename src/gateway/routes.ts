import type { Type } from 'protobufjs';
import { lookupMessage } from './proto-json';

/** How a gateway path maps onto a gRPC method. */
export interface GatewayRoute {
  /** "/v3/kv/range", the path after /v3beta/ has been read as /v3/. */
  readonly path: string;
  /** "/etcdserverpb.KV/Range" */
  readonly grpcPath: string;
  /** unary; bidi: the body is a sequence of requests; server-stream: one request, many answers. */
  readonly kind: 'unary' | 'bidi' | 'server-stream';
  readonly request: Type;
  readonly response: Type;
}

type RouteSpec = readonly [path: string, service: string, method: string, request: string, response: string, kind?: GatewayRoute['kind']];

/**
 * Every path etcd 3.4's gateway registers (all POST), from its generated
 * rpc.pb.gw.go. HashKV shares /v3/maintenance/hash with Hash there and is
 * never reached, so it is not listed. Lock and Election (v3lock, v3election)
 * are not etcd services this proxy serves.
 */
const ROUTE_SPECS: readonly RouteSpec[] = [
  ['/v3/kv/range', 'KV', 'Range', 'RangeRequest', 'RangeResponse'],
  ['/v3/kv/put', 'KV', 'Put', 'PutRequest', 'PutResponse'],
  ['/v3/kv/deleterange', 'KV', 'DeleteRange', 'DeleteRangeRequest', 'DeleteRangeResponse'],
  ['/v3/kv/txn', 'KV', 'Txn', 'TxnRequest', 'TxnResponse'],
  ['/v3/kv/compaction', 'KV', 'Compact', 'CompactionRequest', 'CompactionResponse'],
  ['/v3/watch', 'Watch', 'Watch', 'WatchRequest', 'WatchResponse', 'bidi'],
  ['/v3/lease/grant', 'Lease', 'LeaseGrant', 'LeaseGrantRequest', 'LeaseGrantResponse'],
  ['/v3/lease/revoke', 'Lease', 'LeaseRevoke', 'LeaseRevokeRequest', 'LeaseRevokeResponse'],
  ['/v3/kv/lease/revoke', 'Lease', 'LeaseRevoke', 'LeaseRevokeRequest', 'LeaseRevokeResponse'],
  ['/v3/lease/keepalive', 'Lease', 'LeaseKeepAlive', 'LeaseKeepAliveRequest', 'LeaseKeepAliveResponse', 'bidi'],
  ['/v3/lease/timetolive', 'Lease', 'LeaseTimeToLive', 'LeaseTimeToLiveRequest', 'LeaseTimeToLiveResponse'],
  ['/v3/kv/lease/timetolive', 'Lease', 'LeaseTimeToLive', 'LeaseTimeToLiveRequest', 'LeaseTimeToLiveResponse'],
  ['/v3/lease/leases', 'Lease', 'LeaseLeases', 'LeaseLeasesRequest', 'LeaseLeasesResponse'],
  ['/v3/kv/lease/leases', 'Lease', 'LeaseLeases', 'LeaseLeasesRequest', 'LeaseLeasesResponse'],
  ['/v3/cluster/member/add', 'Cluster', 'MemberAdd', 'MemberAddRequest', 'MemberAddResponse'],
  ['/v3/cluster/member/remove', 'Cluster', 'MemberRemove', 'MemberRemoveRequest', 'MemberRemoveResponse'],
  ['/v3/cluster/member/update', 'Cluster', 'MemberUpdate', 'MemberUpdateRequest', 'MemberUpdateResponse'],
  ['/v3/cluster/member/list', 'Cluster', 'MemberList', 'MemberListRequest', 'MemberListResponse'],
  ['/v3/cluster/member/promote', 'Cluster', 'MemberPromote', 'MemberPromoteRequest', 'MemberPromoteResponse'],
  ['/v3/maintenance/alarm', 'Maintenance', 'Alarm', 'AlarmRequest', 'AlarmResponse'],
  ['/v3/maintenance/status', 'Maintenance', 'Status', 'StatusRequest', 'StatusResponse'],
  ['/v3/maintenance/defragment', 'Maintenance', 'Defragment', 'DefragmentRequest', 'DefragmentResponse'],
  ['/v3/maintenance/hash', 'Maintenance', 'Hash', 'HashRequest', 'HashResponse'],
  ['/v3/maintenance/snapshot', 'Maintenance', 'Snapshot', 'SnapshotRequest', 'SnapshotResponse', 'server-stream'],
  ['/v3/maintenance/transfer-leadership', 'Maintenance', 'MoveLeader', 'MoveLeaderRequest', 'MoveLeaderResponse'],
  ['/v3/auth/enable', 'Auth', 'AuthEnable', 'AuthEnableRequest', 'AuthEnableResponse'],
  ['/v3/auth/disable', 'Auth', 'AuthDisable', 'AuthDisableRequest', 'AuthDisableResponse'],
  ['/v3/auth/authenticate', 'Auth', 'Authenticate', 'AuthenticateRequest', 'AuthenticateResponse'],
  ['/v3/auth/user/add', 'Auth', 'UserAdd', 'AuthUserAddRequest', 'AuthUserAddResponse'],
  ['/v3/auth/user/get', 'Auth', 'UserGet', 'AuthUserGetRequest', 'AuthUserGetResponse'],
  ['/v3/auth/user/list', 'Auth', 'UserList', 'AuthUserListRequest', 'AuthUserListResponse'],
  ['/v3/auth/user/delete', 'Auth', 'UserDelete', 'AuthUserDeleteRequest', 'AuthUserDeleteResponse'],
  ['/v3/auth/user/changepw', 'Auth', 'UserChangePassword', 'AuthUserChangePasswordRequest', 'AuthUserChangePasswordResponse'],
  ['/v3/auth/user/grant', 'Auth', 'UserGrantRole', 'AuthUserGrantRoleRequest', 'AuthUserGrantRoleResponse'],
  ['/v3/auth/user/revoke', 'Auth', 'UserRevokeRole', 'AuthUserRevokeRoleRequest', 'AuthUserRevokeRoleResponse'],
  ['/v3/auth/role/add', 'Auth', 'RoleAdd', 'AuthRoleAddRequest', 'AuthRoleAddResponse'],
  ['/v3/auth/role/get', 'Auth', 'RoleGet', 'AuthRoleGetRequest', 'AuthRoleGetResponse'],
  ['/v3/auth/role/list', 'Auth', 'RoleList', 'AuthRoleListRequest', 'AuthRoleListResponse'],
  ['/v3/auth/role/delete', 'Auth', 'RoleDelete', 'AuthRoleDeleteRequest', 'AuthRoleDeleteResponse'],
  ['/v3/auth/role/grant', 'Auth', 'RoleGrantPermission', 'AuthRoleGrantPermissionRequest', 'AuthRoleGrantPermissionResponse'],
  ['/v3/auth/role/revoke', 'Auth', 'RoleRevokePermission', 'AuthRoleRevokePermissionRequest', 'AuthRoleRevokePermissionResponse'],
];

let routes: ReadonlyMap<string, GatewayRoute> | undefined;

/** The route for a path under /v3/, or undefined (the gateway's 404). */
export function findRoute(path: string): GatewayRoute | undefined {
  routes ??= new Map(
    ROUTE_SPECS.map(([routePath, service, method, request, response, kind = 'unary']) => [
      routePath,
      {
        path: routePath,
        grpcPath: `/etcdserverpb.${service}/${method}`,
        kind,
        request: lookupMessage(`etcdserverpb.${request}`),
        response: lookupMessage(`etcdserverpb.${response}`),
      },
    ]),
  );
  return routes.get(path);
}
