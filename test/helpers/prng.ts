/**
 * The tests' random numbers: xorshift32, so that a seed replays a failure exactly. Tests that
 * take `TMEM_SEED` print the seed they ran with.
 */

/** Numbers in [0, 1) from `seed` (0 is read as 1: xorshift32 never leaves 0). */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1
  return () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 0x1_0000_0000
  }
}
