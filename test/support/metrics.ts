import { get as httpGet } from 'node:http';

/** One sample of Prometheus' text format: `name{label="value",...} number`. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (match === null) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(LABEL)) labels[label[1] ?? ''] = (label[2] ?? '').replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return samples;
}

/**
 * GET <baseUrl>/metrics, as Prometheus scrapes it (the proxy's or etcd's). One
 * connection per scrape: an idle keep-alive connection left to a proxy that
 * stops would hold the test file's process for a minute.
 */
export async function scrape(baseUrl: string): Promise<Sample[]> {
  const text = await new Promise<string>((resolve, reject) => {
    const request = httpGet(`${baseUrl}/metrics`, { agent: false, timeout: 5_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => (response.statusCode === 200 ? resolve(body) : reject(new Error(`${baseUrl}/metrics: HTTP ${response.statusCode}`))));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`${baseUrl}/metrics: no answer within 5 s`)));
    request.on('error', reject);
  });
  return parseMetrics(text);
}

/** The sum of every sample of `name` whose labels include `labels` (0 when there is none). */
export function total(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([label, value]) => s.labels[label] === value))
    .reduce((sum, s) => sum + s.value, 0);
}

/** Scrapes once and sums `name` over the samples matching `labels`. */
export async function metric(baseUrl: string, name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
  return total(await scrape(baseUrl), name, labels);
}

/**
 * The one sample of `name` with `labels`, scraped now; throws when there is none,
 * so that waiting for a gauge to read 0 cannot pass on a metric that is not there.
 */
export async function gauge(baseUrl: string, name: string, labels: Readonly<Record<string, string>> = {}): Promise<number> {
  const matching = (await scrape(baseUrl)).filter((s) => s.name === name && Object.entries(labels).every(([label, value]) => s.labels[label] === value));
  if (matching.length !== 1) throw new Error(`${baseUrl}/metrics: ${matching.length} samples of ${name}${JSON.stringify(labels)}, expected one`);
  return (matching[0] as Sample).value;
}
