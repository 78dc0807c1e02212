import path from 'path'
import { fileURLToPath } from 'url'

import { postgresAdapter } from '@payloadcms/db-postgres'
import { lexicalEditor } from '@payloadcms/richtext-lexical'
import { s3Storage } from '@payloadcms/storage-s3'
import { buildConfig } from 'payload'
import sharp from 'sharp'

import { Media } from './collections/Media'
import { Pages } from './collections/Pages'
import { Users } from './collections/Users'
import { migrations } from './migrations'

const dirname = path.dirname(fileURLToPath(import.meta.url))

/** The database URL: DATABASE_URL, or libpq's PG* variables (what the AWS template's task
 * definition gives: PGPASSWORD from Secrets Manager, PGSSLMODE=require), so one image runs with
 * either. */
function databaseUrl(): string {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL
  const { PGHOST, PGPORT = '5432', PGDATABASE, PGUSER, PGPASSWORD = '', PGSSLMODE } = process.env
  if (!PGHOST || !PGDATABASE || !PGUSER) return ''
  const auth = `${encodeURIComponent(PGUSER)}:${encodeURIComponent(PGPASSWORD)}`
  const ssl = PGSSLMODE ? `?sslmode=${encodeURIComponent(PGSSLMODE)}` : ''
  return `postgres://${auth}@${PGHOST}:${PGPORT}/${encodeURIComponent(PGDATABASE)}${ssl}`
}

/** Media go to S3 when a bucket is named (AWS: the template's media bucket); else to the
 * `media/` folder, which the Docker-host target mounts from a named volume into every slot.
 * The storage plugin is always configured, with `alwaysInsertFields`: its columns (`prefix`,
 * `_objectKey` on media) are then in the schema either way, so one set of committed migrations
 * fits both (without it, an S3 deployment queries a column the migrations never made). */
const mediaBucket = process.env.MEDIA_BUCKET
const storage = [
  s3Storage({
    enabled: Boolean(mediaBucket),
    alwaysInsertFields: true,
    collections: { media: true },
    bucket: mediaBucket || 'media-bucket-not-configured',
    config: {
      region: process.env.AWS_REGION,
      endpoint: process.env.MEDIA_S3_ENDPOINT || undefined,
      forcePathStyle: Boolean(process.env.MEDIA_S3_ENDPOINT),
    },
  }),
]

export default buildConfig({
  admin: { user: Users.slug, importMap: { baseDir: path.resolve(dirname) } },
  collections: [Users, Pages, Media],
  editor: lexicalEditor(),
  secret: process.env.PAYLOAD_SECRET || '',
  typescript: { outputFile: path.resolve(dirname, 'payload-types.ts') },
  // Schema changes only through the committed migrations (src/migrations), never dev "push".
  db: postgresAdapter({
    pool: { connectionString: databaseUrl(), max: Number(process.env.DATABASE_POOL_MAX || 10) },
    push: false,
    migrationDir: path.resolve(dirname, 'migrations'),
    // No prodMigrations: the release pipeline runs `payload migrate` once, in the migrator image,
    // after a backup. Migrating at start would run in every instance at once, with no lock.
  }),
  sharp,
  plugins: storage,
  telemetry: false,
})
