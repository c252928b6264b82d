#!/usr/bin/env node
// In a checkout the TypeScript sources run directly through tsx (a dev dependency), so an edit
// needs no build. An install without dev dependencies (the Docker image) runs the JavaScript that
// `npm run build` compiled into dist/, on plain node.
let tsx
try {
  tsx = await import('tsx/esm/api')
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e
}
if (tsx) {
  tsx.register()
  await import('../commands/cli.ts')
} else {
  try {
    await import('../dist/commands/cli.js')
  } catch (e) {
    if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes('dist/commands/cli.js')) throw e
    process.stderr.write('cardpulse: no build in dist/ and no tsx to run the sources: run `npm ci` (with dev dependencies), or `npm run build`\n')
    process.exit(2)
  }
}
