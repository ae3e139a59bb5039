/**
 * What a node tells the other nodes of its cluster besides committed updates: changes that live
 * outside conversation documents (settings, deletions, bans, closed connections). On one node
 * (`SINGLE_NODE`) there is nobody to tell; in cluster mode `ClusterNode` sends them on the bus.
 */
import type { ErrorCode } from '../../shared/errors.ts'
import type { Role } from '../../shared/schema.ts'

export interface NodePeers {
  /** The settings were changed (and stored): every node reloads them. */
  settingsChanged (): void
  /** The conversation was deleted: every node closes its peers with 4404 and forgets the room. */
  conversationDeleted (conv: string): void
  /** The conversation's bans changed: every node reads them again. */
  bansChanged (conv: string): void
  /** Every node closes `userId`'s connections to `conv` (only those of `role`, when given) with `code`. */
  closeUser (conv: string, userId: string, code: ErrorCode, role?: Role): void
}

export const SINGLE_NODE: NodePeers = {
  settingsChanged () {},
  conversationDeleted () {},
  bansChanged () {},
  closeUser () {}
}
