// Entry of a replay thread: threads do not inherit the TypeScript loader, so register it here.
import { register } from 'tsx/esm/api'

register()
await import('./replayWorker.ts')
