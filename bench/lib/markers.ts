/**
 * Benchmark messages that carry their own sequence number and send time (`#bm<seq>@<epoch ms>#`),
 * so a light client can time delivery from the raw sync frames without decoding Yjs.
 */
import { epochNow } from './timing.ts'

const MARKER = /#bm(\d+)@(\d+(?:\.\d+)?)#/g

/** The text of benchmark message `seq`, stamped now. */
export const markerText = (seq: number): string => `#bm${seq}@${epochNow().toFixed(3)}#`

/** Calls `fn` with the sequence number and send time (epoch ms) of each marker in `bytes`. */
export const forEachMarker = (bytes: Buffer, fn: (seq: number, sentAt: number) => void): void => {
  if (bytes.indexOf('#bm') < 0) return
  const text = bytes.toString('latin1')
  MARKER.lastIndex = 0
  for (let m = MARKER.exec(text); m !== null; m = MARKER.exec(text)) fn(Number(m[1]), Number(m[2]))
}

/**
 * Reads the markers in a frame received at `at` (epoch ms): for each one not seen yet in `got`
 * (one byte per sequence number), marks it and reports its delivery latency.
 */
export const readMarkers = (frame: Buffer, at: number, got: Uint8Array, onFirst: (latencyMs: number) => void): void => {
  forEachMarker(frame, (seq, sentAt) => {
    if (seq >= got.length || got[seq] === 1) return
    got[seq] = 1
    onFirst(at - sentAt)
  })
}
