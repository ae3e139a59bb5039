/**
 * Attachments in judged updates (contract §4.2). The judge is pure and knows only the document,
 * so it reports, for every message an update adds or edits that carries an `attachment`, a claim
 * (message id, sender, attachment); the room checks each claim against the conversation's
 * uploads (`attachmentProblem`) before it applies the update, as it checks fresh ids against the
 * archive. REST writes are checked with the same function.
 */
import type { Attachment } from '../schema.ts'

/** A message of an update (or a REST write) that names a file. */
export interface AttachmentClaim {
  messageId: string
  senderId: string
  attachment: Attachment
}

/**
 * The uploader recorded for files an admin uploads without naming a sender; only system
 * messages (written by the server) may carry them. Never a valid user id.
 */
export const SERVER_UPLOADER = '#admin'

/** What the server knows of one upload: enough to decide whether a claim matches it. */
export interface UploadedFile {
  conversationId: string
  fileId: string
  uploaderId: string
  name: string
  size: number
  contentType: string
  /** The message that carries it, or null while none does. */
  attachedTo: string | null
}

/** The claim a well-formed message object makes (a system message claims as `SERVER_UPLOADER`), if it carries an attachment. */
export const claimOf = (m: { id: string, senderId: string | null, attachment?: Attachment }): AttachmentClaim | null =>
  m.attachment === undefined ? null : { messageId: m.id, senderId: m.senderId ?? SERVER_UPLOADER, attachment: m.attachment }

/**
 * Why `claim` does not match the upload `file` of conversation `conversationId`, or null when it
 * does: the file must exist in this conversation, be uploaded by the message's sender, carry
 * exactly this name, size and content type, and not already be carried by another message.
 */
export const attachmentProblem = (claim: AttachmentClaim, conversationId: string, file: UploadedFile | undefined): string | null => {
  const a = claim.attachment
  if (file === undefined || file.conversationId !== conversationId) return `no file ${a.fileId} in this conversation`
  if (file.uploaderId !== claim.senderId) return `file ${a.fileId} was uploaded by another user`
  if (file.name !== a.name || file.size !== a.size || file.contentType !== a.contentType) return `the attachment does not match file ${a.fileId} (name, size or contentType)`
  if (file.attachedTo !== null && file.attachedTo !== claim.messageId) return `file ${a.fileId} is already attached to another message`
  return null
}
