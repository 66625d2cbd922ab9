import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { answersHealth, etcdBinary, freePort, stopChild, waitUntilHealthy } from './etcd';
import { PeerNetwork } from './peer-network';
import { etcdctl } from './etcdctl';
import { freezeProcess, trackProcess } from './processes';
import { until } from './until';

/** One member of a real multi-member etcd cluster on loopback. */
export interface ClusterMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly clientAddress: string;
  /** The peer URL the cluster knows it by (a forwarder's, with a peer network). */
  readonly peerUrl: string;
  /** Its --data-dir. */
  readonly dataPath: string;
  readonly pid: number;
  running(): boolean;
  output(): string;
  signal(signal: NodeJS.Signals): void;
  /** SIGSTOP, resolved once every thread of the member has stopped. */
  freeze(): Promise<void>;
  /** Starts the member again on the same ports and data dir after it exited. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface EtcdCluster {
  /** Members started by this harness and not removed, in start order. */
  readonly members: ClusterMember[];
  /** name=peerURL,... as etcd's --initial-cluster (and the proxy's) takes it. */
  initialCluster(): string;
  /** Adds a member through the cluster API, then starts it to join. */
  addMember(name: string, options?: { advertiseClientUrl?: string }): Promise<ClusterMember>;
  /** Removes a member through the cluster API (asked of another member), then stops its process. */
  removeMember(member: ClusterMember): Promise<void>;
  /** The member IDs and client URLs the cluster itself reports. */
  memberList(): Promise<{ ID: string; name?: string; clientURLs?: string[]; peerURLs?: string[] }[]>;
  /** The forwarders between the members' peer ports, when started with `peerNetwork`. */
  readonly peerNetwork: PeerNetwork | null;
  /** `etcdctl snapshot save` into `file` at the first running member that can (as `user`, "name:password", with etcd's auth on). */
  saveSnapshot(file: string, user?: string): Promise<void>;
  /**
   * Restores every member from `file` as an operator restores a cluster from
   * a backup: stop all, `etcdctl snapshot restore` into each data dir,
   * start all again. With `newClusterId` the restore takes a new cluster
   * token (so a new cluster ID and new member IDs); else the cluster's own
   * (the same IDs). `whileDown` runs once every member has exited, before
   * their data is replaced. Resolves once every member serves.
   */
  restoreFromSnapshot(file: string, newClusterId: boolean, whileDown?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  /** Route every member's peer traffic through forwarders of ours (peer-network.ts), so that a member can be cut off. */
  readonly peerNetwork?: boolean;
}

interface Ports {
  readonly client: number;
  /** Where the member listens for its peers. */
  readonly peer: number;
  /** Where its peers dial it: `peer`, or a forwarder to it. */
  readonly advertisedPeer: number;
}

// Slower than etcd's defaults (100 ms / 1 s): a shared CI machine must not trigger elections by itself.
// Without the strict check, members can be added right after start (etcd otherwise waits 5 s of full connectivity).
const TIMING = ['--heartbeat-interval=200', '--election-timeout=2000', '--strict-reconfig-check=false'];

/** A 3-member (or n-member) cluster, every member on its own free loopback ports and data dir. */
export async function startEtcdCluster(size = 3, options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  let token = `ecp-${process.pid}-${Date.now()}`;
  const dataDirs: string[] = [];
  const members: ClusterMember[] = [];
  const network = options.peerNetwork === true ? new PeerNetwork(() => members) : null;
  const portsFor = async (name: string): Promise<Ports> => {
    const [client, peer] = [await freePort(), await freePort()];
    return { client, peer, advertisedPeer: network === null ? peer : await network.forwarder(name, peer) };
  };
  const plans: { name: string; ports: Ports }[] = [];
  for (let i = 1; i <= size; i += 1) plans.push({ name: `m${i}`, ports: await portsFor(`m${i}`) });
  const peers = (list: readonly { name: string; ports: Ports }[]): string => list.map((p) => `${p.name}=http://127.0.0.1:${p.ports.advertisedPeer}`).join(',');

  const launchMember = async (name: string, ports: Ports, initialCluster: string, state: 'new' | 'existing', advertise?: string): Promise<ClusterMember> => {
    const dataDir = mkdtempSync(join(tmpdir(), `ecp-etcd-${name}-`));
    dataDirs.push(dataDir);
    const clientUrl = `http://127.0.0.1:${ports.client}`;
    const peerUrl = `http://127.0.0.1:${ports.advertisedPeer}`;
    const args = [
      `--name=${name}`,
      `--data-dir=${join(dataDir, 'data')}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${advertise ?? clientUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${ports.peer}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-state=${state}`,
      `--initial-cluster-token=${token}`,
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
      ...TIMING,
    ];
    let child: ChildProcess | null = null;
    let stderr = '';
    const launch = (): ChildProcess => {
      const started = spawn(etcdBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
      trackProcess(started);
      started.stderr?.setEncoding('utf8');
      started.stderr?.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-20_000)));
      child = started;
      return started;
    };
    launch();
    const member: ClusterMember = {
      name,
      clientUrl,
      clientAddress: `127.0.0.1:${ports.client}`,
      peerUrl,
      dataPath: join(dataDir, 'data'),
      get pid() {
        return child?.pid ?? -1;
      },
      running: () => child !== null && child.exitCode === null && child.signalCode === null,
      output: () => stderr,
      signal(signal) {
        if (member.running()) child?.kill(signal);
      },
      async freeze() {
        if (child === null) throw new Error(`${name} was never started`);
        await freezeProcess(child);
      },
      async restart() {
        if (member.running()) throw new Error(`${name} is still running`);
        await waitUntilHealthy(launch(), clientUrl, () => stderr);
      },
      async stop() {
        if (child !== null) await stopChild(child);
      },
    };
    return member;
  };

  for (const plan of plans) members.push(await launchMember(plan.name, plan.ports, peers(plans), 'new'));
  // waitUntilHealthy needs the child: poll /health until the member serves.
  const wait = (member: ClusterMember): Promise<void> =>
    until(
      () => `${member.name} to be healthy:\n${member.output()}`,
      async () => {
        if (await answersHealth(member.clientUrl)) return true;
        if (!member.running()) throw new Error(`${member.name} exited:\n${member.output()}`);
        return false;
      },
      30_000,
      100,
    );
  try {
    await Promise.all(members.map(wait));
  } catch (error) {
    await Promise.all(members.map((m) => m.stop()));
    await network?.close();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const api = async <T>(path: string, body: object): Promise<T> => {
    let lastError: unknown = null;
    for (const member of members.filter((m) => m.running())) {
      try {
        const response = await fetch(`${member.clientUrl}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(5_000) });
        const parsed = (await response.json()) as T & { error?: string };
        if (!response.ok) throw new Error(`${path}: ${response.status} ${JSON.stringify(parsed)}`);
        return parsed;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError instanceof Error ? lastError : new Error(`${path}: no member answered`);
  };

  const cluster: EtcdCluster = {
    members,
    peerNetwork: network,
    initialCluster: () => members.map((m) => `${m.name}=${m.peerUrl}`).join(','),
    async memberList() {
      const listed = await api<{ members?: { ID: string; name?: string; clientURLs?: string[]; peerURLs?: string[] }[] }>('/v3/cluster/member/list', {});
      return listed.members ?? [];
    },
    async addMember(name, options = {}) {
      const ports = await portsFor(name);
      const peerUrl = `http://127.0.0.1:${ports.advertisedPeer}`;
      await api('/v3/cluster/member/add', { peerURLs: [peerUrl] });
      const initial = [...members.map((m) => `${m.name}=${m.peerUrl}`), `${name}=${peerUrl}`].join(',');
      const member = await launchMember(name, ports, initial, 'existing', options.advertiseClientUrl);
      members.push(member);
      await wait(member);
      return member;
    },
    async removeMember(member) {
      const listed = await cluster.memberList();
      const entry = listed.find((m) => m.peerURLs?.includes(member.peerUrl));
      if (entry === undefined) throw new Error(`${member.name} is not in the member list`);
      members.splice(members.indexOf(member), 1);
      await api('/v3/cluster/member/remove', { ID: entry.ID });
      await member.stop();
      // Removing the leader leaves the cluster without one until an election (seconds at these
      // timings, sometimes many): tests that change membership are about the proxy, not that wait.
      await Promise.all(members.map(wait));
    },
    async saveSnapshot(file, user) {
      let failure = 'no member is running';
      for (const member of members.filter((m) => m.running())) {
        const saved = await etcdctl(member.clientAddress, [...(user === undefined ? [] : [`--user=${user}`]), 'snapshot', 'save', file]);
        if (saved.code === 0) return;
        failure = `${member.name}: ${saved.stderr.trim()}`;
      }
      throw new Error(`etcdctl snapshot save failed: ${failure}`);
    },
    async restoreFromSnapshot(file, newClusterId, whileDown) {
      // Stopped as an operator stops them before a restore: a graceful stop writes out the commit index
      // with the log, which a SIGKILL may leave behind what was applied (whileDown may read the data).
      // One after another: stopped all at once, each waits out its SIGTERM grace (a leader hands over
      // to a member that is going too).
      for (const member of members) await member.stop();
      await whileDown?.();
      if (newClusterId) token = `${token}-restored-${Date.now()}`;
      const initial = cluster.initialCluster();
      for (const member of members) {
        const dataPath = member.dataPath;
        rmSync(dataPath, { recursive: true, force: true });
        const restored = await etcdctl(member.clientAddress, [
          'snapshot',
          'restore',
          file,
          `--data-dir=${dataPath}`,
          `--name=${member.name}`,
          `--initial-cluster=${initial}`,
          `--initial-cluster-token=${token}`,
          `--initial-advertise-peer-urls=${member.peerUrl}`,
        ]);
        if (restored.code !== 0) throw new Error(`etcdctl snapshot restore for ${member.name} failed: ${restored.stderr.trim()}`);
      }
      // Together: a restored member alone cannot elect a leader.
      await Promise.all(members.map((member) => member.restart()));
    },
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
      await network?.close();
      for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
