/**
 * For tests of work that must not hold the event loop: runs `body` while another piece of
 * work asks for a turn again and again, and says how many turns that other work got.
 */
export async function withOtherWork<T>(
  body: () => Promise<T>,
): Promise<{ value: T; turns: number }> {
  let turns = 0
  let done = false
  const other = (): void => {
    turns++
    if (!done) setImmediate(other)
  }
  setImmediate(other)
  try {
    return { value: await body(), turns }
  } finally {
    done = true
  }
}
