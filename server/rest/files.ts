/**
 * REST: uploading and downloading a conversation's files (contract §6, v1.1).
 *
 * Upload: `multipart/form-data` with one part `file`, streamed by @fastify/multipart straight
 * into the blob port (see file-service.ts): the request is never held in memory, and a request
 * over `maxFileSize`, over the uploader's daily quota, or cut off keeps nothing. Who may upload:
 * an admin, or a user who may write there over sync (a ReadWrite participant, or a guest where
 * `guestAccess` is `write`), decided by the same rule as a sync connection (`decideAdmission`).
 *
 * Download: to anyone who may read the conversation's history (token in `Authorization` or
 * `?token=`), with `X-Content-Type-Options: nosniff`, a sandboxing CSP, inline only for raster
 * images and `Content-Disposition: attachment` for anything else, and single byte ranges (206).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import multipart from '@fastify/multipart'
import { decideAdmission } from '../../shared/access.ts'
import { ChatError } from '../../shared/errors.ts'
import { getGuestAccess, getParticipant } from '../../shared/doc.ts'
import { toConversationId, toMessageId, toUserId } from '../../shared/ids.ts'
import type { Principal } from '../auth.ts'
import { cleanFileName, type FileService } from '../files/file-service.ts'
import { parseRange } from '../files/range.ts'
import { INLINE_IMAGE_TYPES } from '../files/sniff.ts'
import { SERVER_UPLOADER } from '../../shared/update-judge/attachments.ts'
import { requireHistoryReader } from './permissions.ts'
import { withConversation } from './conversations.ts'
import { param, principalOf, type RestDeps } from './deps.ts'

/** The principal of a download: the Authorization header, else `?token=` (for links and <img>). */
const downloadPrincipal = async (deps: RestDeps, req: FastifyRequest): Promise<Principal> => {
  const token = (req.query as Record<string, unknown>).token
  if (req.headers.authorization === undefined && typeof token === 'string' && token !== '') {
    return await deps.auth.fromAuthorizationHeader(`Bearer ${token}`)
  }
  return await principalOf(deps, req)
}

/** `Content-Disposition` with an ASCII fallback name and the UTF-8 one (RFC 6266). */
const disposition = (kind: 'inline' | 'attachment', name: string): string => {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_')
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`
}

export const registerFileRoutes = async (app: FastifyInstance, deps: RestDeps, files: FileService): Promise<void> => {
  await app.register(multipart, { limits: { files: 1, fields: 0, parts: 2, fieldNameSize: 100, headerPairs: 50 } })

  app.post('/v1/conversations/:id/files', async (req, reply) => {
    const principal = await principalOf(deps, req)
    const id = toConversationId(param(req, 'id'))
    const settings = deps.settings.current
    const asUser = (req.query as Record<string, unknown>).sender
    // Admins upload as the server, or for a participant named by `?sender=` (its REST messages).
    const uploader = await withConversation(deps, id, room => {
      if (principal.kind === 'admin') {
        if (asUser === undefined) return SERVER_UPLOADER
        const sender = toUserId(asUser)
        if (getParticipant(room.doc, sender) === undefined) throw new ChatError('NOT_PARTICIPANT', `${sender} is not a participant`)
        return sender
      }
      const { canWrite } = decideAdmission({
        participant: getParticipant(room.doc, principal.userId), asGuest: true, browserSync: settings.browserSync, guestAccess: getGuestAccess(room.doc)
      })
      if (!canWrite) throw new ChatError('READ_ONLY', 'Only users who may write here may upload')
      return principal.userId
    })
    if (!req.isMultipart()) throw new ChatError('UNSUPPORTED_MEDIA_TYPE', 'Send multipart/form-data with one part "file"')
    // One byte past the limit lets the file service see that the file is over it.
    const part = await req.file({ limits: { fileSize: settings.maxFileSize + 1 } })
    if (part === undefined || part.fieldname !== 'file') throw new ChatError('INVALID_REQUEST', 'Send one part named "file"')
    const quotaUser = principal.kind === 'admin' ? null : principal.userId
    try {
      const answer = await files.upload(id, uploader, quotaUser, cleanFileName(part.filename), part.file)
      return await reply.status(201).send(answer)
    } finally {
      part.file.resume() // whatever is left of a refused body is read and dropped
    }
  })

  app.get('/v1/conversations/:id/files/:fileId', async (req, reply) => {
    const principal = await downloadPrincipal(deps, req)
    const id = toConversationId(param(req, 'id'))
    const fileId = toMessageId(param(req, 'fileId'))
    await withConversation(deps, id, room => { requireHistoryReader(principal, room.doc, deps.settings.current) })
    const record = await files.get(id, fileId)
    if (record === undefined) throw new ChatError('FILE_NOT_FOUND')
    let range: { start: number, end: number } | null
    try {
      range = parseRange(req.headers.range, record.size)
    } catch (e) {
      void reply.header('content-range', `bytes */${record.size}`)
      throw e
    }
    const { stream } = await files.open(id, fileId, range ?? undefined)
    const inline = INLINE_IMAGE_TYPES.has(record.contentType)
    void reply
      .header('content-type', record.contentType)
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', "default-src 'none'; sandbox")
      .header('content-disposition', disposition(inline ? 'inline' : 'attachment', record.name))
      .header('accept-ranges', 'bytes')
      .header('cache-control', 'private, no-cache')
    if (range === null) {
      void reply.header('content-length', String(record.size))
      return await reply.send(stream)
    }
    void reply.status(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${record.size}`)
      .header('content-length', String(range.end - range.start + 1))
    return await reply.send(stream)
  })
}
