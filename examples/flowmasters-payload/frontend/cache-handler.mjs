/**
 * Next.js's incremental cache (rendered pages and fetches) in Redis, shared by every instance of
 * one build: both slots of a service, every task on AWS. Written on `redis` rather than taken
 * from @fortedigital/nextjs-cache-handler: it is one small file whose three rules are ours to
 * test (docs/cdn.md, "The shared cache"):
 *
 * - Entries are namespaced by the environment and the build (`fm:<FM_ENVIRONMENT>:<APP_VERSION>:`,
 *   the version being Next.js's deployment id): a release never reads another build's pages nor
 *   another environment's, and a rollback finds its build's pages still there (ENTRY_SECONDS).
 * - Redis is optional for serving. Every call has a short deadline, commands are not queued
 *   while it is away, and the handler then serves from this process's own memory (and renders
 *   what it does not have); it reconnects by itself and uses Redis again when it is back.
 * - Nothing without REDIS_URL (a development machine): this process's memory only.
 */
import { createClient } from 'redis'

const PREFIX = `fm:${process.env.FM_ENVIRONMENT || 'default'}:${process.env.APP_VERSION || 'dev'}:`
const DEADLINE_MS = Number(process.env.REDIS_DEADLINE_MS || 300)
const ENTRY_SECONDS = 7 * 24 * 3600
const LOCAL_ENTRIES = 1000

const local = new Map()
let client = null
let ready = Promise.resolve()
let warned = false

function connect() {
  if (client || !process.env.REDIS_URL) return client
  client = createClient({
    url: process.env.REDIS_URL,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 1000,
      reconnectStrategy: (retries) => Math.min(100 * (retries + 1), 1000),
    },
  })
  client.on('error', (error) => {
    if (!warned) console.warn(`shared cache (Redis) unavailable, serving from memory: ${error.message}`)
    warned = true
  })
  client.on('ready', () => {
    if (warned) console.warn('shared cache (Redis) back')
    warned = false
  })
  ready = client.connect().catch(() => {})
  return client
}

// At the server's start, not at its first request: that request is then answered from Redis
// (a rollback's pages), not rendered while the connection is being made.
connect()

/** A Redis call, or undefined when Redis is away or slower than the deadline. */
async function shared(call) {
  const redis = connect()
  if (!redis) return undefined
  let timer
  const deadline = new Promise((resolve) => {
    timer = setTimeout(() => resolve(undefined), DEADLINE_MS)
  })
  try {
    if (!redis.isReady) await Promise.race([ready, deadline])  // still connecting: a moment
    if (!redis.isReady) return undefined
    return await Promise.race([call(redis), deadline])
  } catch {
    return undefined
  } finally {
    clearTimeout(timer)
  }
}

/** JSON that keeps what Next.js stores: Buffers (RSC payloads) and Maps (segments). */
function encode(entry) {
  return JSON.stringify(entry, function (key, value) {
    const raw = this[key]
    if (Buffer.isBuffer(raw)) return { $b: raw.toString('base64') }
    if (raw instanceof Map) return { $m: [...raw.entries()] }
    return value
  })
}

function decode(text) {
  return JSON.parse(text, (_, value) => {
    if (value && typeof value === 'object') {
      if (typeof value.$b === 'string') return Buffer.from(value.$b, 'base64')
      if (Array.isArray(value.$m)) return new Map(value.$m)
    }
    return value
  })
}

function remember(key, entry) {
  local.delete(key)
  local.set(key, entry)
  if (local.size > LOCAL_ENTRIES) local.delete(local.keys().next().value)
}

function tagsOf(data, ctx) {
  const header = data?.headers?.['x-next-cache-tags']
  return [...(ctx?.tags ?? []), ...(typeof header === 'string' ? header.split(',') : [])]
}

export default class CacheHandler {
  constructor(options) {
    this.options = options
  }

  async get(key) {
    const text = await shared((redis) => redis.get(PREFIX + key))
    if (typeof text === 'string') {
      const entry = decode(text)
      remember(key, entry)
      return entry
    }
    return local.get(key) ?? null
  }

  async set(key, data, ctx) {
    const entry = { value: data, lastModified: Date.now(), tags: tagsOf(data, ctx) }
    remember(key, entry)
    await shared(async (redis) => {
      const multi = redis.multi().set(PREFIX + key, encode(entry), { EX: ENTRY_SECONDS })
      for (const tag of entry.tags) {
        multi.sAdd(`${PREFIX}tag:${tag}`, key).expire(`${PREFIX}tag:${tag}`, ENTRY_SECONDS)
      }
      return multi.exec()
    })
  }

  async revalidateTag(tags) {
    const wanted = new Set([tags].flat())
    for (const [key, entry] of local) {
      if (entry.tags?.some((tag) => wanted.has(tag))) local.delete(key)
    }
    await shared(async (redis) => {
      for (const tag of wanted) {
        const keys = await redis.sMembers(`${PREFIX}tag:${tag}`)
        if (keys.length) await redis.del(keys.map((key) => PREFIX + key))
        await redis.del(`${PREFIX}tag:${tag}`)
      }
    })
  }

  resetRequestCache() {}
}
