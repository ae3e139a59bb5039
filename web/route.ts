/**
 * The web UI's routes, read from the URL hash: `#/c/<id>` opens a conversation, `#/g/<id>` opens
 * it as a guest. Pure. A hash that is not valid percent-encoding (`#/c/%E0%A4%A`) is a bad link,
 * not a crash.
 */
export type Route =
  | { kind: 'home' }
  | { kind: 'open', id: string, asGuest: boolean }
  | { kind: 'bad', hash: string }

export const parseRoute = (hash: string): Route => {
  const m = /^#\/([cg])\/(.+)$/.exec(hash)
  if (m === null) return { kind: 'home' }
  try {
    return { kind: 'open', id: decodeURIComponent(m[2]), asGuest: m[1] === 'g' }
  } catch {
    return { kind: 'bad', hash }
  }
}
