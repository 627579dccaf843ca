/**
 * Page I/O on an export's backing file (export.ts): synchronous pread/pwrite of one 4 KiB page
 * at `index * 4096`, retried until whole, so a request runs to its end before the next starts.
 */
import { readSync, writeSync } from 'node:fs'
import { PAGE_SIZE } from '../../abi/constants.js'
import { NBD_EIO, NBD_ENOSPC } from './constants.js'

/** One page's read or write: page `index` of file `fd` and `bytes[at..+4096]`. */
type FilePageIo = (
  fd: number,
  index: number,
  bytes: Uint8Array,
  at: number,
  onError: (error: unknown) => void,
) => number

/** Page `index` into `target[at..]` (zeros past the end of the file); 0 or NBD_EIO. */
export const readFilePage: FilePageIo = (fd, index, target, at, onError) => {
  try {
    let done = 0
    while (done < PAGE_SIZE) {
      const n = readSync(fd, target, at + done, PAGE_SIZE - done, index * PAGE_SIZE + done)
      if (n === 0) break
      done += n
    }
    if (done < PAGE_SIZE) target.fill(0, at + done, at + PAGE_SIZE)
    return 0
  } catch (error) {
    onError(error)
    return NBD_EIO
  }
}

/** `source[at..+4096]` as page `index`; 0, NBD_ENOSPC (the disk is full) or NBD_EIO. */
export const writeFilePage: FilePageIo = (fd, index, source, at, onError) => {
  try {
    let done = 0
    while (done < PAGE_SIZE) {
      done += writeSync(fd, source, at + done, PAGE_SIZE - done, index * PAGE_SIZE + done)
    }
    return 0
  } catch (error) {
    onError(error)
    return (error as NodeJS.ErrnoException).code === 'ENOSPC' ? NBD_ENOSPC : NBD_EIO
  }
}
