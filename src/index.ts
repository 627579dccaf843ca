/**
 * The package entry: the public ABI as the `abi` namespace, and its decoded types at top level.
 */
export * as abi from './abi/mod.js'
export * from './abi/types.js'
