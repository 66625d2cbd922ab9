import type { SnapshotLocation } from '../settings/types';

export type { SnapshotLocation } from '../settings/types';

/** The object key of `name` under the location's prefix. */
export function keyOf(location: SnapshotLocation, name: string): string {
  return location.prefix === '' ? name : `${location.prefix}/${name}`;
}

export function describeLocation(location: SnapshotLocation): string {
  return `s3://${location.bucket}/${location.prefix}`;
}
