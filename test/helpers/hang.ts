/**
 * The one time limit tests use: a guard against a hang, never a measure of speed. It is long
 * enough that a loaded 2-core machine never trips it while the test is making progress; a
 * test that reaches it has stopped, and the runner then says so instead of waiting for ever.
 */
export const HANG_GUARD_MS = 600_000

/** How long a spawned CLI process may run before the test kills it as hung. */
export const CLI_HANG_GUARD_MS = 120_000
