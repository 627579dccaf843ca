/**
 * Loads one of tmem's native addons (built by the package's install script with node-gyp,
 * see binding.gyp) from build/Release, and says why when it cannot be used. Never throws: a
 * missing addon only turns its feature off.
 */
import { createRequire } from 'node:module'

export type AddonStatus<T> =
  | { readonly available: true; readonly native: T; readonly reason: '' }
  | { readonly available: false; readonly native: null; readonly reason: string }

export function addonUnavailable<T>(reason: string): AddonStatus<T> {
  return { available: false, native: null, reason: `unavailable: ${reason}` }
}

/**
 * Requires `build/Release/<name>.node`; `isValid` checks that it has the calls the caller
 * needs (`calls` names them in the reason when it has not).
 */
export function loadAddon<T>(
  name: string,
  isValid: (addon: unknown) => addon is T,
  calls: string,
): AddonStatus<T> {
  // From this file (dist/src/util/native-addon.js) to the package root.
  const url = new URL(`../../../build/Release/${name}.node`, import.meta.url)
  let addon: unknown
  try {
    addon = createRequire(import.meta.url)(url.pathname)
  } catch (error) {
    const code = (error as { code?: string }).code ?? ''
    if (code === 'MODULE_NOT_FOUND') {
      return addonUnavailable(
        `the native addon ${name} was not built (npm install runs node-gyp; see binding.gyp)`,
      )
    }
    return addonUnavailable(`the native addon ${name} did not load: ${(error as Error).message}`)
  }
  if (!isValid(addon)) return addonUnavailable(`the native addon ${name} lacks ${calls}`)
  return { available: true, native: addon, reason: '' }
}

/** True when `value` is an object with a function under each of `names`. */
export function hasFunctions(value: unknown, names: readonly string[]): boolean {
  if (typeof value !== 'object' || value === null) return false
  const record = value as Record<string, unknown>
  return names.every((name) => typeof record[name] === 'function')
}
