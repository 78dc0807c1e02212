/**
 * POST /revalidate: Payload's hooks (backend/src/collections/Pages.ts) ask for this after an
 * editor saves or deletes a page, with the shared secret REVALIDATE_SECRET (a Prefect Secret
 * block, given to both services at their start) in `x-revalidate-secret`. The backend reads
 * (tagged PAGES_TAG) and every page expire at once, so the next request renders the page again
 * from fresh data (the home page lists them all); the entries are dropped from the shared cache,
 * so every instance of this build sees it. Not under /api: on AWS the load
 * balancer sends /api/* to the backend.
 */
import { timingSafeEqual } from 'node:crypto'

import { revalidatePath, revalidateTag } from 'next/cache'

import { PAGES_TAG } from '../backend'

export const dynamic = 'force-dynamic'

const NO_STORE = { 'cache-control': 'no-store' }

function same(given: string, secret: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(secret)
  return a.length === b.length && timingSafeEqual(a, b)
}

export async function POST(request: Request): Promise<Response> {
  const secret = process.env.REVALIDATE_SECRET
  if (!secret) {
    return Response.json(
      { revalidated: false, error: 'REVALIDATE_SECRET is not set: on-demand revalidation is off' },
      { status: 503, headers: NO_STORE },
    )
  }
  if (!same(request.headers.get('x-revalidate-secret') ?? '', secret)) {
    return Response.json(
      { revalidated: false, error: 'missing or wrong x-revalidate-secret' },
      { status: 401, headers: NO_STORE },
    )
  }
  revalidateTag(PAGES_TAG, { expire: 0 })
  revalidatePath('/', 'layout')
  return Response.json({ revalidated: true }, { headers: NO_STORE })
}
