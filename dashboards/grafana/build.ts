import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { SQL, type QueryName } from '../../pipeline/analytics/sql.ts'
import { loadCatalogFile } from '../../pipeline/catalog/index.ts'

/**
 * The Grafana dashboard, built from the query module's SQL (pipeline/analytics/sql.ts), so the
 * panels show the same figures as the web dashboard and `cardpulse replay`. The query parameters
 * become Grafana's: {from}/{to} the dashboard's time range ($__fromTime, $__toTime), {trigger} and
 * {segment} the dashboard variables (All = ''), {bucket_seconds} the panel's $__interval_s, and
 * the economics constants taken from the default catalogue.
 *
 *   npx tsx dashboards/grafana/build.ts   # rewrites dashboards/grafana/dashboards/cardpulse.json
 *
 * test/analytics.grafana.test.ts holds the file equal to what this builds, and runs every panel's SQL.
 */

export const DASHBOARD_FILE = fileURLToPath(new URL('./dashboards/cardpulse.json', import.meta.url))
export const DATASOURCE = { type: 'grafana-clickhouse-datasource', uid: 'cardpulse-clickhouse' }
const DATABASE = 'cardpulse'

/** A query of the module as Grafana SQL. */
export function grafanaSql(name: QueryName): string {
  const sql = SQL[name]
    .replaceAll('{db}', DATABASE)
    .replaceAll(`{from:DateTime64(3, 'UTC')}`, '$__fromTime')
    .replaceAll(`{to:DateTime64(3, 'UTC')}`, '$__toTime')
    .replaceAll('{trigger:String}', '${trigger:sqlstring}')
    .replaceAll('{segment:String}', '${segment:sqlstring}')
    .replaceAll('{bucket_seconds:UInt32}', '$__interval_s')
    .replace(/\{(interchange_rate|cost_[a-z_]+):Float64\}/g, '${$1}')
    .trim()
  const left = /(?<!\$)\{[a-z_]+:[A-Za-z0-9(), ']+\}/.exec(sql)
  if (left) throw new Error(`query ${name}: no Grafana equivalent for the parameter ${left[0]}`)
  return sql
}

interface PanelSpec {
  title: string
  query: QueryName
  kind: 'table' | 'timeseries' | 'barchart'
  w: number
  h: number
  description: string
  stack?: boolean
}

const PANELS: PanelSpec[] = [
  {
    title: 'ROI by trigger',
    query: 'roiTable',
    kind: 'table',
    w: 24,
    h: 9,
    description:
      'Treated = send decisions (intention to treat), control = holdout. Lift = rate(treated) − rate(control) with its 95% interval (Newcombe hybrid score); incremental spend = (mean spend in window, treated − control) × treated; cost = channel cost per delivered message + offer value of converted treated; ROI = (incremental spend × interchange rate − cost) / cost. See docs/analytics.md.',
  },
  { title: 'Programme lift (global control group)', query: 'programme', kind: 'table', w: 12, h: 6, description: 'Send and control decisions of customers outside the global control group against those inside it.' },
  { title: 'Card funnel', query: 'funnel', kind: 'table', w: 12, h: 6, description: 'Cards whose first milestone falls in the range: applied → approved → activated → bound → first purchase, with median hours between steps.' },
  { title: 'Decisions over time', query: 'outcomesOverTime', kind: 'timeseries', w: 12, h: 8, stack: true, description: 'Decisions per interval: send, control, and suppressed by reason.' },
  { title: 'Decisions by outcome and suppression reason', query: 'outcomes', kind: 'table', w: 12, h: 8, description: 'Decisions per trigger, outcome and suppression reason.' },
  { title: 'Risk alerts over time', query: 'alertsOverTime', kind: 'timeseries', w: 12, h: 8, stack: true, description: 'Risk alerts per interval and severity.' },
  { title: 'Risk alerts by kind and severity', query: 'alerts', kind: 'table', w: 12, h: 8, description: 'Alerts, distinct customers and mean score per kind and severity.' },
  { title: 'Webhook delivery health', query: 'deliveryHealth', kind: 'table', w: 24, h: 6, description: 'Per channel: deliveries, success rate, attempts, and latency percentiles of delivered messages (ms).' },
]

export function buildDashboard() {
  const economics = loadCatalogFile().economics
  let x = 0
  let y = 0
  let rowHeight = 0
  const panels = PANELS.map((p, i) => {
    if (x + p.w > 24) {
      x = 0
      y += rowHeight
      rowHeight = 0
    }
    const gridPos = { x, y, w: p.w, h: p.h }
    x += p.w
    rowHeight = Math.max(rowHeight, p.h)
    const timeseries = p.kind === 'timeseries'
    return {
      id: i + 1,
      title: p.title,
      description: p.description,
      type: p.kind,
      datasource: DATASOURCE,
      gridPos,
      targets: [
        {
          refId: 'A',
          datasource: DATASOURCE,
          editorType: 'sql',
          queryType: timeseries ? 'timeseries' : 'table',
          format: timeseries ? 0 : 1,
          rawSql: grafanaSql(p.query),
        },
      ],
      options: timeseries ? { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } } : { showHeader: true },
      fieldConfig: { defaults: timeseries ? { custom: { stacking: { mode: p.stack ? 'normal' : 'none' }, drawStyle: 'bars', fillOpacity: 80 } } : {}, overrides: [] },
    }
  })
  const constant = (name: string, value: number, label: string) => ({ name, label, type: 'constant', query: String(value), hide: 2 })
  const choice = (name: string, label: string, column: string) => ({
    name,
    label,
    type: 'query',
    datasource: DATASOURCE,
    query: `SELECT DISTINCT ${column} FROM ${DATABASE}.decisions WHERE ${column} != '' ORDER BY ${column}`,
    definition: `SELECT DISTINCT ${column} FROM ${DATABASE}.decisions WHERE ${column} != '' ORDER BY ${column}`,
    refresh: 2,
    includeAll: true,
    // "All" is the query parameter's '' (no filter): the custom all value is substituted as is.
    allValue: "''",
    multi: false,
    current: { selected: true, text: 'All', value: '$__all' },
  })
  return {
    uid: 'cardpulse-roi',
    title: 'cardpulse — what the decisions earn',
    description: 'Generated by dashboards/grafana/build.ts from pipeline/analytics/sql.ts; edit those, not this file.',
    tags: ['cardpulse'],
    timezone: 'utc',
    editable: true,
    schemaVersion: 39,
    version: 1,
    refresh: '1m',
    time: { from: 'now-30d', to: 'now' },
    templating: {
      list: [
        choice('trigger', 'Trigger', 'trigger'),
        choice('segment', 'Segment', 'segment'),
        constant('interchange_rate', economics.interchangeRate, 'Interchange rate'),
        constant('cost_sms', economics.channelCost.sms, `SMS cost (${economics.currency})`),
        constant('cost_push', economics.channelCost.push, `Push cost (${economics.currency})`),
        constant('cost_call', economics.channelCost.call, `Call cost (${economics.currency})`),
        constant('cost_app_banner', economics.channelCost.app_banner, `App banner cost (${economics.currency})`),
      ],
    },
    panels,
  }
}

export function dashboardJson() {
  return JSON.stringify(buildDashboard(), null, 2) + '\n'
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(DASHBOARD_FILE, dashboardJson())
  console.log(`wrote ${DASHBOARD_FILE}`)
}
