/**
 * The public ABI in one import: constants, byte layouts, decoded types and the codec.
 * Re-exports only; it owns no logic. `src/index.ts` exposes it as the `abi` namespace.
 */
export * from './constants.js'
export * from './layout.js'
export type * from './types.js'
export * from './codec.js'
