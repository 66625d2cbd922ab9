/** Who this proxy is, as a grayscale mark names its targets. */
export interface MachineTraits {
  readonly hostname: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * What a value's mark means for this proxy: it applies here (no mark, or
 * every condition holds), it is meant for other machines, or the mark cannot
 * be read (it then applies nowhere, so a typo never rolls a change out).
 */
export type MarkVerdict = { readonly kind: 'applies' } | { readonly kind: 'withheld' } | { readonly kind: 'malformed'; readonly reason: string };

const APPLIES: MarkVerdict = { kind: 'applies' };
const WITHHELD: MarkVerdict = { kind: 'withheld' };
const MARK_WORD = Buffer.from('grayscale');

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isStringList = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string');

/**
 * Reads `annotations.grayscale` of a JSON object value: `hostname` (a list)
 * must contain this proxy's hostname, and each key of `labels` (a value or a
 * list of values) must match this proxy's label of that name. A value that
 * is not a JSON object, or has no mark, applies everywhere.
 */
export function judgeValue(value: Buffer, self: MachineTraits): MarkVerdict {
  // Nearly every value carries no mark: it is not parsed.
  if (value.indexOf(MARK_WORD) < 0) return APPLIES;
  let document: unknown;
  try {
    document = JSON.parse(value.toString('utf8'));
  } catch {
    return APPLIES;
  }
  if (!isPlainObject(document) || !isPlainObject(document.annotations) || !('grayscale' in document.annotations)) return APPLIES;
  const mark = document.annotations.grayscale;
  if (!isPlainObject(mark)) return { kind: 'malformed', reason: 'annotations.grayscale is not an object' };
  for (const field of Object.keys(mark)) {
    if (field !== 'hostname' && field !== 'labels') return { kind: 'malformed', reason: `annotations.grayscale.${field} is not hostname or labels` };
  }
  let applies = true;
  if ('hostname' in mark) {
    if (!isStringList(mark.hostname)) return { kind: 'malformed', reason: 'annotations.grayscale.hostname is not a list of strings' };
    if (!mark.hostname.includes(self.hostname)) applies = false;
  }
  if ('labels' in mark) {
    if (!isPlainObject(mark.labels)) return { kind: 'malformed', reason: 'annotations.grayscale.labels is not an object' };
    for (const [name, wanted] of Object.entries(mark.labels)) {
      if (typeof wanted !== 'string' && !isStringList(wanted)) return { kind: 'malformed', reason: `annotations.grayscale.labels.${name} is not a string or a list of strings` };
      const mine = Object.hasOwn(self.labels, name) ? self.labels[name] : undefined;
      if (mine === undefined || (typeof wanted === 'string' ? wanted !== mine : !wanted.includes(mine))) applies = false;
    }
  }
  return applies ? APPLIES : WITHHELD;
}
