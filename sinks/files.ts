import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'

/** An NDJSON file written in large chunks (replay writes millions of lines). */
export class NdjsonWriter {
  private fd: number
  private buffer: string[] = []
  private size = 0
  count = 0

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true })
    this.fd = openSync(path, 'w')
  }

  write(value: unknown) {
    const line = JSON.stringify(value) + '\n'
    this.buffer.push(line)
    this.size += line.length
    this.count++
    if (this.size > 1 << 20) this.flush()
  }

  flush() {
    if (!this.buffer.length) return
    writeSync(this.fd, this.buffer.join(''))
    this.buffer = []
    this.size = 0
  }

  close() {
    this.flush()
    closeSync(this.fd)
  }
}
