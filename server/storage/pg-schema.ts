/**
 * The PostgreSQL layout of the store, versioned: migration N brings a schema at version N-1 to
 * version N. `PgStore.open` applies the missing ones in one transaction, under an advisory lock
 * (so nodes starting together migrate once), and refuses a schema newer than this code knows.
 * Never edit a released migration: add the next one.
 *
 * Version 1:
 *   schema_version  (version, applied_at)             migrations applied
 *   conversations   (conv, created_at)                the conversation exists
 *   doc_heads       (conv, last_seq)                  last sequence number stored (log or snapshot);
 *                                                     its row lock serializes a conversation's appends
 *   doc_log         (conv, seq, bytes)                one durable Yjs V1 update
 *   doc_snapshots   (conv, seq, bytes)                everything up to and including seq
 *   archive         (conv, pos, message_id, message)  a message moved out of the live document
 *   client_owners   (conv, client_id, user_id)        the user that owns a Yjs client id
 *   users           (id, record)                      the user record
 *   memberships     (user_id, conv, joined_at)        a user is a participant of conv
 *   meta            (name, value)                     'settings', 'secret'
 *   sections        (section, key, value)             one module's key-value section (outbox, inbox...)
 *
 * Version 2 (claims of the outbox and of notification batches, for several nodes):
 *   sections.next_at  (double precision, null)  the value's numeric `nextAt` (when it is due),
 *                     written with every put; a claim moves it to the end of its lease
 *   sections.claim    (text, null)              the token of the claim holding the row; a put clears it
 *   Existing rows of `outbox` and `notify` get `next_at` from their value's text (not parsed as
 *   JSON: a value may hold \u0000, which PostgreSQL's JSON operators refuse).
 * Keys use the "C" collation, so they sort by bytes as in LevelDB (ranges and prefixes agree).
 * JSON is `json`, not `jsonb`: jsonb refuses \u0000 and lone surrogates, which a message may hold.
 */

export interface Migration {
  version: number
  statements: readonly string[]
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: [
      'CREATE TABLE conversations (conv text COLLATE "C" PRIMARY KEY, created_at bigint NOT NULL)',
      'CREATE TABLE doc_heads (conv text COLLATE "C" PRIMARY KEY, last_seq bigint NOT NULL)',
      'CREATE TABLE doc_log (conv text COLLATE "C" NOT NULL, seq bigint NOT NULL, bytes bytea NOT NULL, PRIMARY KEY (conv, seq))',
      'CREATE TABLE doc_snapshots (conv text COLLATE "C" PRIMARY KEY, seq bigint NOT NULL, bytes bytea NOT NULL)',
      'CREATE TABLE archive (conv text COLLATE "C" NOT NULL, pos bigint NOT NULL, message_id text COLLATE "C" NOT NULL, message json NOT NULL, PRIMARY KEY (conv, pos))',
      'CREATE INDEX archive_message_id ON archive (conv, message_id)',
      'CREATE TABLE client_owners (conv text COLLATE "C" NOT NULL, client_id bigint NOT NULL, user_id text NOT NULL, PRIMARY KEY (conv, client_id))',
      'CREATE TABLE users (id text COLLATE "C" PRIMARY KEY, record json NOT NULL)',
      'CREATE TABLE memberships (user_id text COLLATE "C" NOT NULL, conv text COLLATE "C" NOT NULL, joined_at bigint NOT NULL, PRIMARY KEY (user_id, conv))',
      'CREATE TABLE meta (name text COLLATE "C" PRIMARY KEY, value json NOT NULL)',
      'CREATE TABLE sections (section text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, value json NOT NULL, PRIMARY KEY (section, key))'
    ]
  },
  {
    version: 2,
    statements: [
      'ALTER TABLE sections ADD COLUMN next_at double precision',
      'ALTER TABLE sections ADD COLUMN claim text',
      `UPDATE sections SET next_at = (regexp_match(value::text, '.*[{,]"nextAt":(-?[0-9][0-9.eE+-]*)'))[1]::float8 WHERE section IN ('outbox', 'notify')`,
      'CREATE INDEX sections_next_at ON sections (section, next_at) WHERE next_at IS NOT NULL'
    ]
  }
]

/** Tables holding data (everything but schema_version): a migration target must have none of it. */
export const DATA_TABLES = ['conversations', 'doc_heads', 'doc_log', 'doc_snapshots', 'archive', 'client_owners', 'users', 'memberships', 'meta', 'sections'] as const
