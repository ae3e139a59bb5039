/**
 * Key builders of the inbox index (the store section `inbox`): the layout, versioned, in one
 * place. Values are JSON.
 *
 *   v1!k!<conv>                          ConvState: subject, last message, last activity
 *   v1!m!<conv>!<user>                   MemberState: read marker, unread count, current list key
 *   v1!l!<user>!<inverted activity>!<conv>  ListItem: one row of the user's conversation list,
 *                                        so a prefix scan yields it newest activity first
 *   v1!t!<conv>!<createdAt>!<messageId>  Message: the conversation's timeline, for unread counts
 *   v1!b!<user>                          true: the user's memberships from before the index exist
 *
 * Times are milliseconds, written as 16 decimal digits so that string order is number order.
 * Ids never contain `!` (contract §2), so a prefix never matches another id's keys.
 */

const V = 'v1'
const SEP = '!'
/** Sorts after every character a key part may hold. */
const HIGH = '\xff'
/** Larger than any millisecond time (2^53 - 1 has 16 digits). */
const TIME_MAX = Number.MAX_SAFE_INTEGER

const timePart = (ms: number): string => Math.max(0, Math.min(TIME_MAX, Math.floor(ms))).toString().padStart(16, '0')

export const convKey = (conv: string): string => `${V}${SEP}k${SEP}${conv}`
export const memberPrefix = (conv: string): string => `${V}${SEP}m${SEP}${conv}${SEP}`
export const memberKey = (conv: string, user: string): string => memberPrefix(conv) + user
export const listPrefix = (user: string): string => `${V}${SEP}l${SEP}${user}${SEP}`
export const listKey = (user: string, activityAt: number, conv: string): string =>
  `${listPrefix(user)}${timePart(TIME_MAX - activityAt)}${SEP}${conv}`
export const timelinePrefix = (conv: string): string => `${V}${SEP}t${SEP}${conv}${SEP}`
export const timelineKey = (conv: string, createdAt: number, messageId: string): string =>
  `${timelinePrefix(conv)}${timePart(createdAt)}${SEP}${messageId}`
/** First timeline key of a message created after `ms`. */
export const timelineAfter = (conv: string, ms: number): string => `${timelinePrefix(conv)}${timePart(ms + 1)}`
export const backfillKey = (user: string): string => `${V}${SEP}b${SEP}${user}`

/** The range holding every key that starts with `prefix`. */
export const prefixRange = (prefix: string): { gte: string, lt: string } => ({ gte: prefix, lt: prefix + HIGH })
