import type { Effect } from './types.ts'

/**
 * The per-card deadline window: opened by an event, due `delay` later, resolved early by another
 * event only inside the half-open window [start, due), cancelled by a card closed before the due
 * time. One moment per window; the timer is keyed by the card id.
 *
 * Events reach operators in event-time order, and the events of an instant are applied before
 * that instant's timers: an event at exactly the due time is already too late to resolve or
 * cancel, which is why the timer, not the event, decides.
 *
 * The state stores the start under a field named by the operator (`activatedAt`, `startedAt`),
 * so each keeps the shape it stores, and `cards` is left out when empty: a customer with no card
 * in play stores nothing.
 */

export type DeadlineCard<Start extends string> = { [K in Start]?: number } & {
  /** Resolved: the moment went out or the window was resolved in time. Kept so a repeated opening does not re-arm. */
  done?: true
  /** Closed at or after the due time: the pending timer still fires, then the card is forgotten (unless `keepClosed`). */
  closed?: true
}

export interface DeadlineState<Start extends string> {
  cards?: Record<string, DeadlineCard<Start>>
}

export interface DeadlineStep<S> {
  state: S
  effects?: Effect[]
}

/** What a fired window hands its operator to build the moment: the card and when its window opened. */
export interface Expired {
  cardId: string
  startedAt: number
}

export interface DeadlineOptions {
  /**
   * A card closed at or after the due time is kept once its timer fired (as done) instead of
   * forgotten, so opening it again does not re-arm: one moment per card even across a close.
   */
  keepClosed?: boolean
}

/** The steps of the windows whose start is stored under `start`, each due `delay` after it. */
export function deadlines<Start extends string>(start: Start, { keepClosed = false }: DeadlineOptions = {}) {
  type Card = DeadlineCard<Start>
  type State = DeadlineState<Start>
  const startOf = (card: Card | undefined): number | undefined => (card as Record<string, number | undefined> | undefined)?.[start]
  const opened = (at: number) => ({ [start]: at }) as Card
  const done = () => ({ done: true }) as Card

  return {
    startOf,

    /** Opens the card's window at `at`; a card already opened or resolved keeps the first window. */
    open(state: State, cardId: string, at: number, delay: number): DeadlineStep<State> {
      const card = state.cards?.[cardId]
      if (card?.done || startOf(card) !== undefined) return { state }
      return { state: withCard(state, cardId, opened(at)), effects: [{ kind: 'setTimer', key: cardId, at: at + delay }] }
    },

    /**
     * Resolves the card's window if `at` falls inside it; resolved before it opened, the card is
     * done and the window never opens. At or after the due time it is too late: the moment was due.
     */
    resolve(state: State, cardId: string, at: number, delay: number): DeadlineStep<State> {
      const card = state.cards?.[cardId]
      if (card?.done) return { state }
      const started = startOf(card)
      if (started === undefined) return { state: withCard(state, cardId, done()) }
      if (at >= started + delay) return { state }
      return { state: withCard(state, cardId, done()), effects: [{ kind: 'cancelTimer', key: cardId }] }
    },

    /** Resolves every card whose open window holds `at`; cards not yet opened are left alone. */
    resolveOpen(state: State, at: number, delay: number): DeadlineStep<State> {
      let next = state
      const effects: Effect[] = []
      for (const [cardId, card] of Object.entries(state.cards ?? {})) {
        const started = startOf(card)
        if (card.done || started === undefined || at >= started + delay) continue
        next = withCard(next, cardId, done())
        effects.push({ kind: 'cancelTimer', key: cardId })
      }
      return { state: next, effects }
    },

    /**
     * The card closed (or was declined) at `at`: before the due time this cancels; at or after it
     * the moment was due while the card was open, so the pending timer still fires.
     */
    close(state: State, cardId: string, at: number, delay: number): DeadlineStep<State> {
      const card = state.cards?.[cardId]
      if (!card) return { state }
      const started = startOf(card)
      if (!card.done && started !== undefined && at >= started + delay) return { state: keepClosed ? state : withCard(state, cardId, { ...card, closed: true as const }) }
      return { state: withoutCard(state, cardId), effects: card.done ? [] : [{ kind: 'cancelTimer', key: cardId }] }
    },

    /** The card's timer fired: the window expired unresolved, unless it was resolved or cancelled meanwhile. */
    fire(state: State, cardId: string): { state: State; expired?: Expired } {
      const card = state.cards?.[cardId]
      const started = startOf(card)
      if (!card || card.done || started === undefined) return { state }
      return {
        state: card.closed ? withoutCard(state, cardId) : withCard(state, cardId, done()),
        expired: { cardId, startedAt: started },
      }
    },
  }
}

function withCard<C>(state: { cards?: Record<string, C> }, cardId: string, card: C) {
  return { cards: { ...state.cards, [cardId]: card } }
}

function withoutCard<C>(state: { cards?: Record<string, C> }, cardId: string): { cards?: Record<string, C> } {
  const { [cardId]: _, ...cards } = state.cards ?? {}
  return Object.keys(cards).length ? { cards } : {}
}
