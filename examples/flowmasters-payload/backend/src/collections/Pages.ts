import type { CollectionConfig } from 'payload'

import { revalidateFrontend } from '../hooks/revalidateFrontend'

/** The site's pages: public to read, edited in the admin. */
export const Pages: CollectionConfig = {
  slug: 'pages',
  admin: { useAsTitle: 'title' },
  access: { read: () => true },
  hooks: revalidateFrontend,
  fields: [
    { name: 'title', type: 'text', required: true },
    { name: 'slug', type: 'text', required: true, unique: true, index: true },
    { name: 'body', type: 'richText' },
  ],
}
