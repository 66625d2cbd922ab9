// What a proxy process is configured with, as plain types. Every layer reads
// its settings from here, so this file imports nothing else from src/: the
// flag parser (config.ts) sits at the top, its types at the bottom.

/** Log levels pino understands, in etcd's spelling where the two agree. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const PROXY_MODES = ['readwrite', 'readonly'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];
export const STALE_READS = ['allow', 'deny'] as const;
export type StaleReads = (typeof STALE_READS)[number];
export const S3_REQUEST_CHECKSUMS = ['when-supported', 'when-required'] as const;
export type S3RequestChecksum = (typeof S3_REQUEST_CHECKSUMS)[number];

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** One upstream etcd client URL, as given by the operator, and where gRPC dials it. */
export interface UpstreamEndpoint {
  /** The URL as the operator wrote it; used in logs and metrics labels. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The grpc-js target string. */
  readonly target: string;
  /** https: dialled with the upstream TLS material (--cacert, --cert, --key). */
  readonly tls: boolean;
}

/** The resolved, validated, frozen configuration of one proxy process. */
export interface ProxyConfig {
  /** Upstream etcd client URLs, in the order given (the default when no discovery source is set). */
  readonly endpoints: readonly UpstreamEndpoint[];
  /** Where the member list comes from: the first source set of --discovery-srv, --initial-cluster, --endpoints. */
  readonly discovery: DiscoverySource;
  /** How often the member list is refreshed from the cluster (Cluster.MemberList). */
  readonly syncIntervalMs: number;
  /** Where gRPC and HTTP clients connect (one port for both). */
  readonly listenAddr: HostPort;
  /**
   * The client URL that MemberList reports for every member; null means
   * "derive it from the bound listen address" (see advertisedUrlFor).
   */
  readonly advertiseClientUrl: string | null;
  /** etcd grpc-proxy's --resolver-prefix/--resolver-ttl: this proxy registers under the prefix and MemberList lists who did; null: off. */
  readonly resolver: ResolverSettings | null;
  readonly dataDir: string;
  /** A second listener that serves only /metrics; null when not asked for. */
  readonly metricsAddr: HostPort | null;
  readonly logLevel: LogLevel;
  /** How long a graceful stop waits for in-flight calls before cutting them. */
  readonly shutdownGraceMs: number;
  /** readonly: every write is refused with UNIMPLEMENTED. */
  readonly mode: ProxyMode;
  /** The upstream is lost once no member has answered for this long. */
  readonly upstreamTimeoutMs: number;
  /** While the upstream is lost: answer reads from the mirror (allow) or refuse them (deny). */
  readonly staleReads: StaleReads;
  /** HTTP status of a write the proxy refuses on the JSON gateway (read-only, upstream lost): 501 unless set. */
  readonly writeRejectHttpStatus: number;
  /** Key prefixes the mirror holds; empty: the whole keyspace. */
  readonly mirrorPrefixes: readonly string[];
  /** Revisions the event log keeps behind the mirror revision. */
  readonly history: number;
  /** How often a watch created with progress_notify hears the revision when nothing else happened. */
  readonly watchProgressNotifyIntervalMs: number;
  /** Bytes a watch stream may have waiting for its client before its watches are cancelled as too slow. */
  readonly watchBufferBytes: number;
  /** Memory for encoded answers of repeated mirror reads (0: none kept). */
  readonly responseCacheBytes: number;
  /** Serving processes sharing the client port; 1: this process serves (no workers). */
  readonly workers: number;
  /** Configuration grayscale: under these prefixes, versions marked for other machines are not shown here. */
  readonly grayscale: GrayscaleSettings;
  /** The least time between two steps of the rolling consistency check; 0 turns the check off. */
  readonly consistencyCheckIntervalMs: number;
  /** What the consistency check may read from the upstream, averaged. */
  readonly consistencyCheckBytesPerSecond: number;
  /** The fastest a list of the keyspace (first sync, after a compaction) reads from the upstream; 0: no limit. */
  readonly listBytesPerSecond: number;
  /** Where periodic snapshots (and the APISIX export) are written; null: none. */
  readonly snapshotDir: string | null;
  readonly snapshotIntervalMs: number;
  /** The etcd prefix APISIX keeps its configuration under, for the apisix.yaml export. */
  readonly apisixPrefix: string;
  /** Published snapshots in object storage (s3://bucket/prefix); null: none. */
  readonly snapshotUrl: SnapshotLocation | null;
  readonly objectStore: ObjectStoreOptions;
  /** Publish this proxy's snapshot to --snapshot-url every --snapshot-interval while the mirror moves. */
  readonly snapshotPublish: boolean;
  /** How many published snapshots the bucket keeps. */
  readonly snapshotKeep: number;
  /** Ed25519 private key (PEM, PKCS#8) a publisher signs its manifests with; null: unsigned. Read at start only. */
  readonly snapshotSignKey: string | null;
  /** Ed25519 public keys (PEM, SPKI; one per file): a fetched snapshot must be signed by one of them; empty: unsigned ones are taken. Read at start only. */
  readonly snapshotVerifyKeys: readonly string[];
  /** The largest published snapshot fetched; a bigger one is refused before it is downloaded. */
  readonly snapshotMaxBytes: number;
  /** TLS to https upstream members. */
  readonly upstreamTls: UpstreamTlsConfig;
  /** The user the mirror logs in as when etcd has auth on (read permission on the mirrored keys); null: none. */
  readonly upstreamUser: UpstreamUser | null;
  /** How often what a user may read is asked of etcd again while the user is active. */
  readonly authRefreshIntervalMs: number;
  /** While etcd is down, answer logins that succeeded upstream within `authOfflineMaxAgeMs`. */
  readonly authOfflineLogin: boolean;
  readonly authOfflineMaxAgeMs: number;
  /** etcd's public key for its JWT tokens (PEM), so the proxy checks them itself; null: none. */
  readonly authJwtPubKey: string | null;
  /** TLS for clients on the client port; null: plaintext. */
  readonly serverTls: ServerTlsConfig | null;
  /** The YAML file the values were read from, if any. */
  readonly configFile: string | null;
}

/** Proxies of one tier registering themselves, as etcd grpc-proxy's do. */
export interface ResolverSettings {
  /** Each proxy puts `<prefix>/<advertised client URL>` under a lease; MemberList through any of them lists the live ones. */
  readonly prefix: string;
  /** Seconds a registration outlives its proxy (the lease's TTL). */
  readonly ttlSeconds: number;
}

/** Where grayscale marks are honoured (grayscale/), and who this proxy is to them. */
export interface GrayscaleSettings {
  /** Key prefixes whose values may carry a mark; none: grayscale is off. */
  readonly prefixes: readonly string[];
  readonly hostname: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface UpstreamTlsConfig {
  readonly caFile: string | null;
  readonly certFile: string | null;
  readonly keyFile: string | null;
  readonly insecureSkipVerify: boolean;
}

export interface UpstreamUser {
  readonly name: string;
  readonly password: string;
}

export interface ServerTlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  /** Set: clients must present a certificate signed by it. */
  readonly trustedCaFile: string | null;
}

/** The member list's origin, in etcd's order of precedence. */
export type DiscoverySource =
  | { readonly kind: 'srv'; readonly domain: string; readonly serviceName: string; readonly dnsServer: string | null }
  | { readonly kind: 'initial-cluster'; readonly peers: readonly InitialClusterPeer[] }
  | { readonly kind: 'endpoints' };

/** One name=peerURL pair of etcd's --initial-cluster. */
export interface InitialClusterPeer {
  readonly name: string;
  readonly peerUrl: string;
}

/** Where snapshots are published: a bucket and a key prefix inside it (no leading or trailing slash; may be empty). */
export interface SnapshotLocation {
  readonly bucket: string;
  readonly prefix: string;
}

/** How the proxy reaches the object store; credentials come from the AWS SDK's own chain, never from configuration. */
export interface ObjectStoreOptions {
  /** Any S3-compatible endpoint; null: AWS's own for the region. */
  readonly endpoint: string | null;
  readonly region: string;
  readonly forcePathStyle: boolean;
  /** Some S3-compatible stores take request checksums only where S3 requires them. */
  readonly requestChecksum: S3RequestChecksum;
}
