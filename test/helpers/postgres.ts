/**
 * PostgreSQL for tests: the machine's server (127.0.0.1:5432, trust, database `test`, or
 * PARLEY_TEST_POSTGRES_URL). Each test gets its own schema, dropped afterwards.
 */
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'

export const PG_URL = process.env.PARLEY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export interface TestSchema {
  schema: string
  /** PG_URL naming the schema (`?schema=`), for PgStore and `--postgres`. */
  url: string
  /** Runs SQL as an administrator (outside the schema). */
  admin: ReturnType<typeof postgres>
  /** `url` for another host:port (a proxy in front of the server). */
  urlVia (port: number): string
  /** Drops the schema and everything in it. */
  drop (): Promise<void>
}

export const withSchema = (url: string, schema: string, port?: number): string => {
  const u = new URL(url)
  u.searchParams.set('schema', schema)
  if (port !== undefined) { u.hostname = '127.0.0.1'; u.port = String(port) }
  return u.href
}

/** Creates an empty schema `parley_test_<random>`. */
export const createTestSchema = async (): Promise<TestSchema> => {
  const schema = `parley_test_${randomBytes(6).toString('hex')}`
  const admin = postgres(PG_URL, { max: 2, onnotice: () => {} })
  await admin`CREATE SCHEMA ${admin(schema)}`
  return {
    schema,
    url: withSchema(PG_URL, schema),
    admin,
    urlVia: port => withSchema(PG_URL, schema, port),
    async drop () {
      await admin`DROP SCHEMA IF EXISTS ${admin(schema)} CASCADE`
      await admin.end()
    }
  }
}
