/**
 * `standalone`: the runner image copies only `.next/standalone`. `deploymentId` is the release's
 * version (a build argument), so old and new pages never mix assets during a rollout.
 */
const nextConfig = {
  output: 'standalone',
  deploymentId: process.env.APP_VERSION || undefined,
  poweredByHeader: false,
}

export default nextConfig
