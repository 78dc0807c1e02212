/**
 * GET /api/health: 200 {status, version, backend: {reachable, version}} while this server runs.
 * The backend's reachability is reported, not required: the release's smoke checks judge it
 * (`backend.version`), and the load balancer keeps serving the frontend while the backend is away.
 */
import { getJson } from '../../backend'

export const dynamic = 'force-dynamic'

const version = process.env.APP_VERSION || 'dev'

export async function GET(): Promise<Response> {
  let backend: { reachable: boolean; version?: string; error?: string }
  try {
    const health = await getJson<{ version: string }>('/api/health', true)
    backend = { reachable: true, version: health.version }
  } catch (error) {
    backend = { reachable: false, error: error instanceof Error ? error.message : String(error) }
  }
  return Response.json(
    { status: 'ok', version, backend },
    { headers: { 'cache-control': 'no-store' } },
  )
}
