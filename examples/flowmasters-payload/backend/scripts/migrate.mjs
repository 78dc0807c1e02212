// Payload's migration CLI as the release pipeline's migration contract wants it (README,
// "Migrations: the contract for any app"):
//
//   node scripts/migrate.mjs migrate          (then `migrate:down`, `migrate:status`, ...)
//
// Payload's CLI exits 1 when it cannot reach the database, the same code as for a migration that
// failed half way, which must not run again blindly. So this first opens one connection itself:
// when the database cannot be reached (refused, reset, timed out, shutting down, too many
// connections), nothing has run yet, and it exits 75 (EX_TEMPFAIL), which the pipeline retries
// with backoff. A wrong password or a missing database is not temporary: exit 1 with the error.
// Otherwise it runs `payload <args>` and exits with its code. The connection is the app's:
// DATABASE_URL, else libpq's PG* variables (PGAPPNAME names the session, as the pipeline's do).
import { spawnSync } from 'node:child_process'
import pg from 'pg'

const TEMPFAIL = 75
// Node's network errors, and PostgreSQL's classes 08 (connection exception) and 57P0x (the
// server is shutting down or starting), 53300 (too many connections).
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'EPIPE', 'EAI_AGAIN'])
const TEMPORARY_STATE = /^(08...|57P0[123]|53300)$/

function temporary(error) {
  if (NETWORK.has(error.code) || TEMPORARY_STATE.test(error.code ?? '')) return true
  // node-postgres's own words when the server closes the connection before it is ready
  return /Connection terminated|timeout expired/i.test(error.message ?? '')
}

async function reachable() {
  const client = new pg.Client({
    ...(process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {}),
    connectionTimeoutMillis: 10_000,
  })
  try {
    await client.connect()
    await client.query('SELECT 1')
  } finally {
    await client.end().catch(() => {})
  }
}

const args = process.argv.slice(2)
if (args.length === 0) {
  console.error('usage: node scripts/migrate.mjs <payload command> [args]  (e.g. migrate)')
  process.exit(2)
}
try {
  await reachable()
} catch (error) {
  const why = `${error.code ?? error.name}: ${error.message}`
  if (temporary(error)) {
    console.error(`the database cannot be reached (${why}); no migration ran: exit ${TEMPFAIL}, try again`)
    process.exit(TEMPFAIL)
  }
  console.error(`the database refused the migrations' connection (${why})`)
  process.exit(1)
}
const payload = spawnSync('node_modules/.bin/payload', args, { stdio: 'inherit' })
if (payload.error) {
  console.error(`could not start Payload's CLI: ${payload.error.message}`)
  process.exit(1)
}
process.exit(payload.status ?? 1)
