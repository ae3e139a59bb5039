/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as LevelDB uses it for its log records,
 * and LevelDB's masking of stored checksums. Table-driven, one byte at a time: fast enough for
 * reading a few megabytes of log at open. Test vectors from RFC 3720 B.4 in the tests.
 */

const TABLE = ((): Uint32Array => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = (c & 1) !== 0 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/** The CRC-32C of `bytes[start, end)`, continuing from `crc` (0 for a fresh checksum). */
export const crc32c = (bytes: Uint8Array, start = 0, end = bytes.length, crc = 0): number => {
  let c = ~crc >>> 0
  for (let i = start; i < end; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8)
  return ~c >>> 0
}

const MASK_DELTA = 0xa282ead8

/** LevelDB stores checksums masked, so a CRC of data that embeds CRCs is not degenerate. */
export const maskCrc = (crc: number): number => ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0

/** The inverse of `maskCrc`. */
export const unmaskCrc = (masked: number): number => {
  const rot = (masked - MASK_DELTA) >>> 0
  return ((rot >>> 17) | (rot << 15)) >>> 0
}
