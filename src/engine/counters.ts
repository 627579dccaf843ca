/**
 * The host-wide counters of the LIST `G=` line (docs/semantics.md "Statistics"). The core owns one instance and is
 * the only writer on the data plane; control, list and stats read it.
 */
export class GlobalCounters {
  totalOps = 0
  erroredOps = 0
  failedCopies = 0
  failedSubpageAllocs = 0
  failedPageAllocs = 0
  evicted = 0
  evictAttempts = 0
  relinquished = 0
  relinquishAttempts = 0
  relinquishEvictsMax = 0
  ephemeralCount = 0
  ephemeralMax = 0
  objectCount = 0
  objectMax = 0
  pageCount = 0
  pageMax = 0
  contentCount = 0
  contentMax = 0
  goodEphemeralPuts = 0
  dedupPuts = 0
  tzeBytes = 0
  compressedBytes = 0
  /** Stored pages that failed their check on read (never served). Not a LIST key. */
  corruptPages = 0
}
