import type { CollectionAfterChangeHook, CollectionAfterDeleteHook } from 'payload'

/** Tell the frontend that the pages changed (its POST /revalidate, with the shared secret), so
 * an editor's save is on the public site at the next request instead of after the frontend's
 * own revalidation. Not awaited: a save never waits for, or fails because of, the frontend; a
 * failed call is logged and the page still shows within the frontend's revalidate time. */
function notifyFrontend(log: { warn: (message: string) => void }): void {
  const url = process.env.FRONTEND_REVALIDATE_URL
  const secret = process.env.REVALIDATE_SECRET
  if (!url || !secret) return
  fetch(url, {
    method: 'POST',
    headers: { 'x-revalidate-secret': secret },
    signal: AbortSignal.timeout(5000),
  })
    .then((answer) => {
      if (!answer.ok) log.warn(`frontend revalidation: ${url} answered ${answer.status}`)
    })
    .catch((error) => log.warn(`frontend revalidation: ${url}: ${error}`))
}

const afterChange: CollectionAfterChangeHook = ({ req }) => {
  notifyFrontend(req.payload.logger)
}

const afterDelete: CollectionAfterDeleteHook = ({ req }) => {
  notifyFrontend(req.payload.logger)
}

/** A collection's `hooks` for content the public site shows. */
export const revalidateFrontend = { afterChange: [afterChange], afterDelete: [afterDelete] }
