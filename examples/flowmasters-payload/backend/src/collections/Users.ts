import type { CollectionConfig } from 'payload'

/** Editors who log in to the admin. */
export const Users: CollectionConfig = {
  slug: 'users',
  admin: { useAsTitle: 'email' },
  auth: true,
  fields: [],
}
