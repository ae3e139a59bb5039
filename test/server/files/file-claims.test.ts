/**
 * Attachment claims across the nodes of a cluster: two FileServices (two nodes) on one
 * PostgreSQL schema, with the blob store on PostgreSQL. A file one node claimed for a message is
 * refused to another message on the other node before the first node marked it attached; the
 * claim lapses if its message never comes; no node's sweep deletes a claimed file.
 */
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { isChatError } from '../../../shared/errors.ts'
import { DEFAULT_SETTINGS } from '../../../shared/settings.ts'
import type { Message } from '../../../shared/schema.ts'
import type { Timers } from '../../../server/presence/presence-hub.ts'
import { CLAIM_MS, FileService } from '../../../server/files/file-service.ts'
import { PgStore } from '../../../server/storage/pg-store.ts'
import { PgBlobStore } from '../../../server/storage/pg-blob-store.ts'
import { createTestSchema } from '../../helpers/postgres.ts'
import { PDF_BYTES } from '../../helpers/uploads.ts'

const C = suite('attachment claims across nodes')

/** The sweep is run by hand here. */
const manualTimers: Timers = { setTimeout: () => null, clearTimeout: () => {}, setInterval: () => null, clearInterval: () => {} }

const refused = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p
  } catch (e) {
    assert.ok(isChatError(e) && e.code === 'INVALID_ATTACHMENT', String(e))
    return (e as Error).message
  }
  assert.unreachable('the claim was accepted')
  return ''
}

C('a file claimed on node A is refused on node B until it lapses; no sweep deletes it meanwhile; once attached it stays taken', async () => {
  const schema = await createTestSchema()
  let clock = 1_000_000_000_000
  const stores = await Promise.all([PgStore.open({ url: schema.url, heartbeatMs: 0 }), PgStore.open({ url: schema.url, heartbeatMs: 0 })])
  const blobs = await Promise.all([PgBlobStore.open({ url: schema.url }), PgBlobStore.open({ url: schema.url })])
  const [a, b] = stores.map((store, i) => new FileService({
    section: store.section('files'),
    blobs: blobs[i],
    settings: () => DEFAULT_SETTINGS,
    timers: manualTimers,
    now: () => clock,
    newId: () => `file-${i}-${Math.random().toString(36).slice(2)}`,
    orphanMs: 60_000,
    sweepMs: 1_000,
    durableClaims: true,
    onError: err => { throw err }
  }))
  try {
    const up = await a.upload('c1', 'alice', 'alice', 'doc.pdf', (async function * () { yield PDF_BYTES })())
    const attachment = { fileId: up.fileId, name: up.name, size: up.size, contentType: up.contentType }
    const claim = (messageId: string): { messageId: string, senderId: string, attachment: typeof attachment } => ({ messageId, senderId: 'alice', attachment })

    await a.check('c1', [claim('m1')])
    // Node A has not marked the file attached yet (its message is being committed): B must see the claim.
    assert.match(await refused(b.check('c1', [claim('m2')])), 'already attached to another message')
    await a.check('c1', [claim('m1')]) // the same message again (a retry, an edit) is fine

    // Past the orphan age, neither node's sweep deletes the claimed file.
    clock += 61_000
    assert.is(await b.sweep(), 0, 'node B knows the claim from PostgreSQL only')
    assert.ok(await blobs[1].stat(`c1/${up.fileId}`) !== undefined)

    // m1 never came (refused for another reason): the claim lapses and m2 may carry the file.
    clock += CLAIM_MS
    await b.check('c1', [claim('m2')])
    const m2: Message = { id: 'm2', senderId: 'alice', text: 'x', createdAt: clock, type: 'UserMessage', attachment }
    b.handle({ type: 'message.sent', conversationId: 'c1', message: m2 } as Parameters<FileService['handle']>[0])
    await b.settled()
    assert.is((await a.get('c1', up.fileId))?.attachedTo, 'm2', 'node A reads what node B marked')
    assert.match(await refused(a.check('c1', [claim('m3')])), 'already attached to another message')
    clock += 10 * CLAIM_MS
    assert.match(await refused(a.check('c1', [claim('m3')])), 'already attached to another message')
    assert.is(await a.sweep(), 0, 'an attached file is never swept')
  } finally {
    await Promise.all([a.stop(), b.stop()])
    await Promise.all([...stores, ...blobs].map(async s => await s.close()))
    await schema.drop()
  }
})

C.run()
