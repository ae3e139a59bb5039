/**
 * parley/client: the Parley client library for browsers and Node (see docs/client.md).
 * Node apps import `parley/client/node`, which adds a WebSocket and a folder store.
 */
export { createSession, browserNetwork, type Session, type SessionOptions } from './session.ts'
export { ConversationView, type ViewMessage, type MessageStatus, type OpenOptions, type ViewEvents } from './view.ts'
export { ConversationList, type ConversationListOptions, type ConversationListEvents } from './conversation-list.ts'
export type { Presence, PresenceUser } from './presence.ts'
export { UserDirectory, initialsOf, type UserCard, type UserDirectoryEvents } from './users.ts'
export type { ConversationInfo, ConversationAttributes, ConversationSummary, UserProfile, MessagePage, ParticipantSettings, BanInfo, UploadedFile, UploadOptions, SearchHit, SearchOptions } from './rest.ts'
export type { ConnectionStatus, NetworkSignal, WebSocketCtor, WebSocketLike, ClientTimers } from './transport.ts'
export { memoryStore, type ClientStore, type LocalDoc, type LocalMeta, type LocalState } from './storage.ts'
export { indexedDbStore } from './storage-idb.ts'
export { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts'
export { ChatError, isChatError, ERRORS, type ErrorCode } from '../shared/errors.ts'
export type { Message, Attachment, Access, Notify, GuestAccess } from '../shared/schema.ts'
export type { Reactions } from '../shared/reactions.ts'
