#!/usr/bin/env node
// Runs the TypeScript command line directly: no build step between a checkout and a running pipeline.
import { register } from 'tsx/esm/api'

register()
await import('../pipeline/cli.ts')
