/**
 * Byte counts as people read them, against values worked out by hand: binary units, whole
 * numbers kept whole in the short style, three significant figures in the progress style.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatBytes, formatRate } from '../../src/util/units.js'

void test('formatBytes, short: whole numbers stay whole, others get one decimal', () => {
  assert.equal(formatBytes(0), '0 B')
  assert.equal(formatBytes(1023), '1023 B')
  assert.equal(formatBytes(1024), '1 KiB')
  assert.equal(formatBytes(64 * 1024 * 1024), '64 MiB')
  assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5 GiB')
  assert.equal(formatBytes(3 * 1024 ** 4), '3 TiB')
  assert.equal(formatBytes(5 * 1024 ** 5), '5120 TiB')
})

void test('formatBytes, figures: three significant figures', () => {
  assert.equal(formatBytes(512, 'figures'), '512 B')
  assert.equal(formatBytes(1536, 'figures'), '1.50 KiB')
  assert.equal(formatBytes(1024 ** 3, 'figures'), '1.00 GiB')
  assert.equal(formatBytes(12.34 * 1024 * 1024, 'figures'), '12.3 MiB')
  assert.equal(formatBytes(512 * 1024, 'figures'), '512 KiB')
})

void test('formatRate: decimal units per second', () => {
  assert.equal(formatRate(1.04e9), '1.04 GB/s')
  assert.equal(formatRate(123.4e6), '123 MB/s')
  assert.equal(formatRate(5_000), '5 kB/s')
})
