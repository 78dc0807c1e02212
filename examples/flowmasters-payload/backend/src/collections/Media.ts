import path from 'path'
import { fileURLToPath } from 'url'

import type { CollectionConfig } from 'payload'

const dirname = path.dirname(fileURLToPath(import.meta.url))

/** Uploads. On the Docker host `MEDIA_DIR` is a named volume mounted into every slot's container,
 * so a file survives every release and rollback; on AWS the S3 adapter (payload.config.ts) keeps
 * them in the media bucket. */
export const Media: CollectionConfig = {
  slug: 'media',
  access: { read: () => true },
  upload: {
    staticDir: process.env.MEDIA_DIR || path.resolve(dirname, '../../media'),
  },
  fields: [{ name: 'alt', type: 'text' }],
}
