import { fileURLToPath } from 'node:url'

/**
 * `standalone`: the runner image copies only `.next/standalone`. `deploymentId` is the release's
 * version (a build argument), so old and new pages never mix assets during a rollout.
 * `cacheHandler`: rendered pages live in Redis (REDIS_URL at run time), shared by every instance
 * of the build and namespaced by its version; Next.js's own in-memory copy is off, so two slots
 * never answer from two different renders.
 */
const nextConfig = {
  output: 'standalone',
  deploymentId: process.env.APP_VERSION || undefined,
  env: { NEXT_PUBLIC_APP_VERSION: process.env.APP_VERSION || 'dev' },
  poweredByHeader: false,
  cacheHandler: fileURLToPath(new URL('./cache-handler.mjs', import.meta.url)),
  cacheMaxMemorySize: 0,
}

export default nextConfig
