/**
 * Uploading files in tests: a small file through fetch and FormData, and a large one streamed
 * chunk by chunk over a raw HTTP request (never held in memory), optionally cut off half-way.
 */
import { request } from 'node:http'

/** A 1x1 PNG. */
export const PNG_1X1 = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=', 'base64')
/** A minimal PDF header (file-type recognises `%PDF-`). */
export const PDF_BYTES = Buffer.from('%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n')

export interface Uploaded { status: number, body: any }

/** Uploads `bytes` as part `file` named `name`, claiming `claimedType`. */
export const uploadFile = async (url: string, conv: string, auth: string, name: string, bytes: Uint8Array<ArrayBuffer>, claimedType = 'application/octet-stream', query = ''): Promise<Uploaded> => {
  const form = new FormData()
  form.append('file', new Blob([bytes], { type: claimedType }), name)
  const res = await fetch(`${url}/v1/conversations/${conv}/files${query}`, { method: 'POST', headers: { authorization: auth }, body: form })
  const text = await res.text()
  return { status: res.status, body: text === '' ? null : JSON.parse(text) }
}

/**
 * Streams a `total`-byte file in 64 KiB chunks as a multipart upload. With `cutAfter`, the socket
 * is destroyed once that many file bytes are written (resolves with status 0).
 */
export const streamUpload = async (url: string, conv: string, auth: string, total: number, cutAfter?: number): Promise<Uploaded> => {
  const boundary = '----parleytest' + Math.random().toString(36).slice(2)
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`)
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
  const chunk = Buffer.alloc(64 * 1024, 7)
  const { hostname, port } = new URL(url)
  return await new Promise<Uploaded>((resolve, reject) => {
    const req = request({
      hostname, port, method: 'POST', path: `/v1/conversations/${conv}/files`,
      headers: { authorization: auth, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + total + tail.length }
    })
    let answered = false
    req.on('response', res => {
      answered = true
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => { const t = Buffer.concat(parts).toString(); resolve({ status: res.statusCode ?? 0, body: t === '' ? null : JSON.parse(t) }) })
    })
    req.on('error', e => { if (cutAfter !== undefined || answered) resolve({ status: 0, body: null }); else reject(e) })
    req.write(head)
    let sent = 0
    const pump = (): void => {
      while (sent < total && !answered) {
        if (cutAfter !== undefined && sent >= cutAfter) {
          req.destroy()
          resolve({ status: 0, body: null })
          return
        }
        const n = Math.min(chunk.length, total - sent)
        sent += n
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once('drain', pump)
          return
        }
      }
      if (!answered) req.end(tail)
    }
    pump()
  })
}
