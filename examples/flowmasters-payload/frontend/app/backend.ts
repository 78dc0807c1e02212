/** The Payload backend's REST API, read on the server at request time (BACKEND_URL is a runtime
 * setting, not baked into the build: one image runs in every environment). */
/** How long a page waits for the backend before it fails (a 500). Above the backend's worst
 * answer under load, so a slow backend makes a slow page, not a failed one: on a busy 2-core
 * host (a `next build` beside the services) the backend answered in up to 3.8 s and 3 of 8,496
 * pages failed with the old 3 s. BACKEND_TIMEOUT_MS sets it at run time. */
const TIMEOUT_MS = Number(process.env.BACKEND_TIMEOUT_MS || 10000)

export const backendUrl = (process.env.BACKEND_URL || 'http://127.0.0.1:3000').replace(/\/$/, '')

export type Page = { id: number; title: string; slug: string; summary?: string | null }

export async function getJson<T>(path: string): Promise<T> {
  const response = await fetch(`${backendUrl}${path}`, {
    cache: 'no-store',
    signal: AbortSignal.timeout(TIMEOUT_MS),
  })
  if (!response.ok) throw new Error(`backend answered ${response.status} for ${path}`)
  return (await response.json()) as T
}

export async function listPages(): Promise<Page[]> {
  const found = await getJson<{ docs: Page[] }>('/api/pages?limit=50&depth=0&sort=slug')
  return found.docs
}
