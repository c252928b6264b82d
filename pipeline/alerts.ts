import type { Catalog } from '../schemas/catalog.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { AlertEffect } from '../operators/types.ts'
import { alertId } from './ids.ts'

/**
 * Turns an operator's alert into the published `RiskAlert`. The catalogue may re-grade a signal's
 * severity; the id is a hash of kind, customer and occurrence, so a replay or a restart gives the
 * same one.
 */
export function buildAlert(effect: AlertEffect, customerId: string, catalog: Catalog, detectedAt: number): RiskAlert {
  return {
    id: alertId(effect.alertKind, customerId, effect.occurrence),
    kind: effect.alertKind,
    severity: catalog.signals[effect.alertKind]?.severity ?? effect.severity,
    score: effect.score,
    customerId,
    ...(effect.cardId ? { cardId: effect.cardId } : {}),
    eventTime: new Date(effect.eventTime).toISOString(),
    detectedAt: new Date(detectedAt).toISOString(),
    evidence: effect.evidence,
    ruleVersion: catalog.version,
  }
}
