/**
 * Storage key builders: the on-disk layout, versioned, in one place.
 *
 * Layout v1 (two sublevels of one LevelDB):
 *   bin  (values are bytes)
 *     v1!<conv>!log!<seq:12 hex>      one durable Yjs V1 update emitted by the server's document
 *     v1!<conv>!snap!<seq:12 hex>     a snapshot holding everything up to and including <seq>
 *   json (values are JSON)
 *     v1!conv!<conv>                  { createdAt }: the conversation exists
 *     v1!client!<conv>!<clientId>     userId: the user that owns a Yjs client id in <conv>
 *     v1!user!<user>                  the user record
 *     v1!member!<user>!<conv>         { joinedAt }: <user> is a participant of <conv>
 *     v1!settings                     the settings object
 *     v1!arch!<conv>!<pos:12 hex>     an archived message (moved out of the live document)
 *     v1!archid!<conv>!<messageId>    pos: where an archived message is
 * Ids never contain `!` (contract §2), so a prefix never matches another id's keys.
 */

export const VERSION = 'v1'
const SEP = '!'
/** Sorts after every character an id or a key part may hold. */
const HIGH = '\xff'

const seqPart = (seq: number): string => seq.toString(16).padStart(12, '0')

export const parseSeq = (part: string): number => Number.parseInt(part, 16)

export const docPrefix = (conv: string): string => `${VERSION}${SEP}${conv}${SEP}`
export const logKey = (conv: string, seq: number): string => `${docPrefix(conv)}log${SEP}${seqPart(seq)}`
export const logPrefix = (conv: string): string => `${docPrefix(conv)}log${SEP}`
export const snapKey = (conv: string, seq: number): string => `${docPrefix(conv)}snap${SEP}${seqPart(seq)}`
export const snapPrefix = (conv: string): string => `${docPrefix(conv)}snap${SEP}`

export const convKey = (conv: string): string => `${VERSION}${SEP}conv${SEP}${conv}`
export const clientPrefix = (conv: string): string => `${VERSION}${SEP}client${SEP}${conv}${SEP}`
export const clientKey = (conv: string, clientId: number): string => `${clientPrefix(conv)}${clientId}`
export const userKey = (user: string): string => `${VERSION}${SEP}user${SEP}${user}`
export const memberPrefix = (user: string): string => `${VERSION}${SEP}member${SEP}${user}${SEP}`
export const memberKey = (user: string, conv: string): string => `${memberPrefix(user)}${conv}`
export const settingsKey = (): string => `${VERSION}${SEP}settings`
export const archivePrefix = (conv: string): string => `${VERSION}${SEP}arch${SEP}${conv}${SEP}`
export const archiveKey = (conv: string, pos: number): string => `${archivePrefix(conv)}${seqPart(pos)}`
export const archiveIdPrefix = (conv: string): string => `${VERSION}${SEP}archid${SEP}${conv}${SEP}`
export const archiveIdKey = (conv: string, messageId: string): string => `${archiveIdPrefix(conv)}${messageId}`

/** A range covering every key that starts with `prefix`. */
export const prefixRange = (prefix: string): { gte: string, lt: string } => ({ gte: prefix, lt: prefix + HIGH })
