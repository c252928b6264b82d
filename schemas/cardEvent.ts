import type { LifecycleStage } from './events.ts'

/**
 * A card's milestone for the card funnel (ClickHouse `card_events`): each lifecycle event of a
 * card, and the card's first approved purchase as stage `first_purchase`.
 */
export type CardEvent = {
  customerId: string
  cardId: string
  stage: LifecycleStage | 'first_purchase'
  eventTime: string
  eventId: string
  segment?: string
}
