'use client'

/** The footer's version, rendered on the server and again in the browser. The version is
 * inlined into this component's chunk at build time (next.config.mjs, `env`), so each version's
 * client code differs, as a real release's does: a page of the version before asks for chunks
 * the new version does not have, which the CDN keeps (version skew; docs/cdn.md). */
export function VersionBadge() {
  return <footer>frontend {process.env.NEXT_PUBLIC_APP_VERSION || 'dev'}</footer>
}
