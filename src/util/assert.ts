/**
 * Assertions for programmer errors (broken invariants). They crash: operating errors are
 * return codes, never assertions. Messages are constant strings so that a passing assertion
 * allocates nothing.
 */

export class AssertionError extends Error {
  override readonly name = 'AssertionError'
  readonly code = 'ERR_TMEM_ASSERTION'
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(message)
}
