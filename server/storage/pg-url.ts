/** The `--postgres` URL: what to connect to, which schema, and how to name it to people. Pure. */

/** Where a URL points, parsed once. */
export interface PgTarget {
  /** The URL handed to the client (without Parley's own `schema` parameter). */
  url: string
  /** The schema holding Parley's tables (`?schema=NAME`, default public). */
  schema: string
  /** host:port, for messages. */
  address: string
  /** The URL without its password, for messages and logs. */
  redacted: string
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/

/** Parses a `--postgres` URL (`schema`, when given, wins over its `?schema=`); throws an Error naming what is wrong. */
export const parsePgUrl = (text: string, schemaOverride?: string): PgTarget => {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    throw new Error('the PostgreSQL URL must look like postgres://user@host:5432/database')
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error('the PostgreSQL URL must start with postgres:// or postgresql://')
  const schema = schemaOverride ?? u.searchParams.get('schema') ?? 'public'
  if (!SCHEMA_NAME.test(schema)) throw new Error(`schema ${JSON.stringify(schema)} must be lower-case letters, digits and _`)
  u.searchParams.delete('schema')
  // The client passes URL parameters on as session settings; durability is not negotiable.
  if (u.searchParams.has('synchronous_commit')) throw new Error('synchronous_commit cannot be set in the URL: Parley always commits synchronously')
  const address = `${u.hostname === '' ? 'localhost' : u.hostname}:${u.port === '' ? '5432' : u.port}`
  const shown = new URL(u.href)
  shown.password = ''
  if (schema !== 'public') shown.searchParams.set('schema', schema)
  return { url: u.href, schema, address, redacted: shown.href }
}
