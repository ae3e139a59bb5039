import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { crc32c, maskCrc, unmaskCrc } from '../../../server/storage/crc32c.ts'
import { BLOCK_SIZE, HEADER_SIZE, RECORD_TYPE, decodeWriteBatch, scanLog } from '../../../server/storage/leveldb-log.ts'

/** LevelDB's log writer (db/log_writer.cc), to build test files. */
const writeLog = (records: Uint8Array[]): Uint8Array => {
  const out: number[] = []
  for (const rec of records) {
    let left = rec.length
    let at = 0
    let begin = true
    do {
      const leftover = BLOCK_SIZE - (out.length % BLOCK_SIZE)
      if (leftover < HEADER_SIZE) for (let i = 0; i < leftover; i++) out.push(0)
      const avail = BLOCK_SIZE - (out.length % BLOCK_SIZE) - HEADER_SIZE
      const n = Math.min(left, avail)
      const end = left === n
      const type = begin && end ? RECORD_TYPE.FULL : begin ? RECORD_TYPE.FIRST : end ? RECORD_TYPE.LAST : RECORD_TYPE.MIDDLE
      const body = new Uint8Array(1 + n)
      body[0] = type
      body.set(rec.subarray(at, at + n), 1)
      const crc = maskCrc(crc32c(body))
      out.push(crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24, n & 0xff, n >>> 8, type, ...rec.subarray(at, at + n))
      at += n
      left -= n
      begin = false
    } while (left > 0)
  }
  return Uint8Array.from(out)
}

/** A record whose bytes say which one it is. */
const record = (i: number, size: number): Uint8Array => Uint8Array.from({ length: size }, (_, j) => (i * 31 + j) & 0xff)
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))

const Crc = suite('crc32c')

Crc('matches the RFC 3720 test vectors', () => {
  assert.is(crc32c(new Uint8Array(32)), 0x8a9136aa)
  assert.is(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43)
  assert.is(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e)
  assert.is(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c)
  assert.is(crc32c(new TextEncoder().encode('123456789')), 0xe3069283)
})

Crc('continues a checksum across pieces, and masking round-trips', () => {
  const data = new TextEncoder().encode('hello world')
  assert.is(crc32c(data, 5, data.length, crc32c(data, 0, 5)), crc32c(data))
  for (const c of [0, 1, 0xffffffff, 0x8a9136aa]) assert.is(unmaskCrc(maskCrc(c)), c)
  assert.is.not(maskCrc(0x8a9136aa), 0x8a9136aa)
})

Crc.run()

const Log = suite('scanLog')

const sizes = [10, 100, 40_000, 7, 0, 32_761, 70_000, 300, 5]
const records = sizes.map((s, i) => record(i, s))

Log('reads back every record of a clean log, across blocks and fragments', () => {
  const scan = scanLog(writeLog(records))
  assert.equal(scan.problems, [])
  assert.is(scan.truncatedAt, null)
  assert.is(scan.records.length, records.length)
  scan.records.forEach((r, i) => assert.ok(same(r.data, records[i]), `record ${i}`))
})

Log('a record cut off by the end of the file is a crash trace, not a problem', () => {
  const buf = writeLog(records)
  const lastStart = buf.length - HEADER_SIZE - 5
  for (const cut of [lastStart + 3, lastStart + HEADER_SIZE + 2]) {
    const scan = scanLog(buf.subarray(0, cut))
    assert.equal(scan.problems, [], `cut at ${cut}`)
    assert.is(scan.truncatedAt, lastStart)
    assert.is(scan.records.length, records.length - 1)
  }
  // A fragmented record whose last part never made it.
  const multi = writeLog([record(1, 10), record(2, 50_000)])
  const scan = scanLog(multi.subarray(0, BLOCK_SIZE + 100))
  assert.equal(scan.problems, [])
  assert.is(scan.records.length, 1)
  assert.is(scan.truncatedAt, 17)
})

Log('a flipped byte inside a record is a checksum mismatch at its offset; later records are still found', () => {
  const small = Array.from({ length: 50 }, (_, i) => record(i, 100))
  const buf = writeLog(small)
  const damaged = 10 * (HEADER_SIZE + 100)
  buf[damaged + HEADER_SIZE + 40] ^= 0x01
  const scan = scanLog(buf)
  assert.equal(scan.problems, [{ offset: damaged, reason: 'checksum mismatch' }])
  assert.is(scan.records.length, 49)
  assert.ok(same(scan.records[10].data, small[11]))
  assert.is(scan.unreadableBytes, HEADER_SIZE + 100)
})

Log('records misaligned by lost bytes (a failed append) are reported and salvaged', () => {
  const small = Array.from({ length: 400 }, (_, i) => record(i, 200))
  const full = writeLog(small)
  const lostAt = 5 * (HEADER_SIZE + 200) + 50
  const buf = Uint8Array.from([...full.subarray(0, lostAt), ...full.subarray(lostAt + 1000)])
  const scan = scanLog(buf)
  assert.ok(scan.problems.length >= 1)
  assert.is(scan.problems[0].offset, 5 * (HEADER_SIZE + 200))
  // Records 5 to 9 lost their bytes; every later one is found, also past block boundaries.
  for (let i = 0; i < 5; i++) assert.ok(same(scan.records[i].data, small[i]), `record ${i} read`)
  for (let i = 10; i < 400; i++) assert.ok(scan.records.some(r => same(r.data, small[i])), `record ${i} salvaged`)
})

Log('a fragment without its first part, and data after zero padding, are problems', () => {
  const buf = writeLog([record(1, 50_000)])
  const second = scanLog(buf.subarray(BLOCK_SIZE))
  assert.equal(second.problems, [{ offset: 0, reason: 'fragment without the start of its record' }])
  const padded = new Uint8Array(BLOCK_SIZE + 200)
  padded.set(writeLog([record(2, 10)]), BLOCK_SIZE)
  assert.equal(scanLog(padded).problems, [], 'a zero block then records')
  const dirty = padded.slice()
  dirty[100] = 7
  assert.is(scanLog(dirty).problems[0]?.reason, 'data after zero padding')
  const tail = writeLog([record(3, 10)])
  assert.equal(scanLog(Uint8Array.from([...tail, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])).problems, [], 'zeros at the end')
})

Log('decodes write batches and refuses partial ones', () => {
  const key = new TextEncoder().encode('k1')
  const value = new TextEncoder().encode('value')
  const bytes = Uint8Array.from([7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 2, ...key, 5, ...value, 0, 2, ...key])
  const batch = decodeWriteBatch(bytes)
  assert.is(batch.sequence, 7n)
  assert.equal(batch.ops.map(o => o.type), ['put', 'del'])
  assert.ok(batch.ops[0].type === 'put' && same(batch.ops[0].value, value))
  assert.throws(() => decodeWriteBatch(bytes.subarray(0, bytes.length - 1)))
  assert.throws(() => decodeWriteBatch(Uint8Array.from([...bytes, 0])))
})

Log.run()
