import { withPayload } from '@payloadcms/next/withPayload'

/**
 * `standalone` makes `.next/standalone` a self-contained server (the runner image copies only it).
 * `deploymentId` is the release's version (a build argument): Next.js tags its assets with it, so a
 * browser holding pages of one version never fetches assets of another during a rollout.
 */
const nextConfig = {
  output: 'standalone',
  deploymentId: process.env.APP_VERSION || undefined,
  poweredByHeader: false,
}

export default withPayload(nextConfig, { devBundleServerPackages: false })
