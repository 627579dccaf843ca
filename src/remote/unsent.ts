/**
 * Demotions queued and not yet acknowledged by the cluster, by key and field. A get of a page
 * demoted a moment ago is answered from here instead of from the cluster: the read would not
 * wait for the queue (fetch.ts), so it could reach Redis before the write and miss a page the
 * daemon still holds. Entries are the values the queue holds anyway (no copy), each removed
 * when its own write settles (a newer demotion of the field replaces it first).
 */
export class UnsentValues {
  readonly #keys = new Map<string, Map<number, Buffer>>()

  /** A demotion of `value` to field `index` of `key` was queued. */
  add(key: string, index: number, value: Buffer): void {
    let fields = this.#keys.get(key)
    if (fields === undefined) {
      fields = new Map()
      this.#keys.set(key, fields)
    }
    fields.set(index, value)
  }

  /** The write of `value` settled (or was never sent): it stops answering for the field. */
  settled(key: string, index: number, value: Buffer): void {
    const fields = this.#keys.get(key)
    if (fields?.get(index) !== value) return
    fields.delete(index)
    if (fields.size === 0) this.#keys.delete(key)
  }

  /** The value queued for the field, or null. */
  get(key: string, index: number): Buffer | null {
    return this.#keys.get(key)?.get(index) ?? null
  }
}
