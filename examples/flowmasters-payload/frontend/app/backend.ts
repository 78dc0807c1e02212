/** The Payload backend's REST API, read on the server at request time (BACKEND_URL is a runtime
 * setting, not baked into the build: one image runs in every environment). */
const TIMEOUT_MS = 3000

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
