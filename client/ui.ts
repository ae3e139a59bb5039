/**
 * parley/client/ui: the web UI's chatbox and inbox for embedding in another page (browser only;
 * see docs/client.md#embedding).
 */
export { mountChatbox, mountInbox, parleyStyles, type Mounted, type MountOptions } from '../web/embed.ts'
