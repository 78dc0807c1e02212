/**
 * GET /api/health: what the release pipeline (and a load balancer) asks.
 * 200 {status, version, database, migrations} when Payload is up and the database answers a
 * cheap query (the applied migrations); 503 with the reason otherwise. `version` is the image's
 * APP_VERSION, given to the build as a build argument.
 */
import config from '@payload-config'
import { getPayload } from 'payload'

export const dynamic = 'force-dynamic'

const version = process.env.APP_VERSION || 'dev'

export async function GET(): Promise<Response> {
  const started = Date.now()
  try {
    const payload = await getPayload({ config })
    const applied = await payload.find({
      collection: 'payload-migrations',
      limit: 0,
      pagination: false,
      sort: 'createdAt',
      depth: 0,
    })
    return Response.json(
      {
        status: 'ok',
        version,
        database: { ok: true, ms: Date.now() - started },
        migrations: applied.docs.map((m) => ({ name: m.name, batch: m.batch })),
      },
      { headers: { 'cache-control': 'no-store' } },
    )
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return Response.json(
      { status: 'unavailable', version, database: { ok: false, error: reason.slice(0, 200) } },
      { status: 503, headers: { 'cache-control': 'no-store' } },
    )
  }
}
