/** The Payload backend's REST API, read on the server (BACKEND_URL is a runtime setting, not baked
 * into the build: one image runs in every environment). */
/** How long a page waits for the backend before it fails (a 500). Above the backend's worst
 * answer under load, so a slow backend makes a slow page, not a failed one: on a busy 2-core
 * host (a `next build` beside the services) the backend answered in up to 3.8 s and 3 of 8,496
 * pages failed with the old 3 s. BACKEND_TIMEOUT_MS sets it at run time. */
const TIMEOUT_MS = Number(process.env.BACKEND_TIMEOUT_MS || 10000)

/** How old a rendered page may get, in seconds (Next.js's incremental static regeneration): a
 * page is rendered at most once a second whatever the traffic, and an editor's change shows
 * within about that (the CDN keeps a page no longer: it follows the page's s-maxage). */
export const PAGE_SECONDS = 1

/** The tag of every backend read a page makes: POST /revalidate expires them all at once (a
 * page rendered again with the data cache's copy of the old content would still be old). */
export const PAGES_TAG = 'pages'

export const backendUrl = (process.env.BACKEND_URL || 'http://127.0.0.1:3000').replace(/\/$/, '')

type RichNode = { text?: string; children?: RichNode[]; type?: string }
export type Page = {
  id: number
  title: string
  slug: string
  summary?: string | null
  body?: { root?: RichNode } | null
}

/** `fresh`: read at request time, never cached (the health check); else cached with the page. */
export async function getJson<T>(path: string, fresh = false): Promise<T> {
  const response = await fetch(`${backendUrl}${path}`, {
    ...(fresh
      ? { cache: 'no-store' as const }
      : { next: { revalidate: PAGE_SECONDS, tags: [PAGES_TAG] } }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  })
  if (!response.ok) throw new Error(`backend answered ${response.status} for ${path}`)
  return (await response.json()) as T
}

export async function listPages(): Promise<Page[]> {
  const found = await getJson<{ docs: Page[] }>('/api/pages?limit=50&depth=0&sort=slug')
  return found.docs
}

export async function findPage(slug: string): Promise<Page | null> {
  const query = `where[slug][equals]=${encodeURIComponent(slug)}&limit=1&depth=0`
  const found = await getJson<{ docs: Page[] }>(`/api/pages?${query}`)
  return found.docs[0] ?? null
}

/** The paragraphs of a rich-text (Lexical) body, as plain text. */
export function paragraphs(page: Page): string[] {
  const text = (node: RichNode): string =>
    (node.text ?? '') + (node.children ?? []).map(text).join('')
  return (page.body?.root?.children ?? []).map(text).filter(Boolean)
}
