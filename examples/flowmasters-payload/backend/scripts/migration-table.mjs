// Prints Payload's migration table for the release pipeline, where the pipeline cannot reach
// the database itself (AWS: RDS in private subnets) and runs this in a one-off task instead:
//
//   node scripts/migration-table.mjs <table> <name column> <batch column>
//
// One JSON line: {"rows": [[name, batch], ...]} in batch order, or {"rows": null} while the
// table does not exist. The connection is the app's: DATABASE_URL, else libpq's PG* variables.
import pg from 'pg'

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const [table, nameColumn, batchColumn] = process.argv.slice(2)
for (const name of [table, nameColumn].concat(batchColumn ? [batchColumn] : [])) {
  if (!IDENTIFIER.test(name ?? '')) {
    console.error(`not an SQL identifier: ${JSON.stringify(name)}`)
    process.exit(2)
  }
}

const client = new pg.Client(
  process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {},
)
await client.connect()
try {
  const found = await client.query('SELECT to_regclass($1) IS NOT NULL AS found', [`"${table}"`])
  if (!found.rows[0].found) {
    console.log(JSON.stringify({ rows: null }))
  } else {
    const batch = batchColumn ? `"${batchColumn}"` : 'NULL'
    const order = batchColumn ? `${batch}, "${nameColumn}"` : `"${nameColumn}"`
    const result = await client.query({
      text: `SELECT "${nameColumn}", ${batch} FROM "${table}" ORDER BY ${order}`,
      rowMode: 'array',
    })
    console.log(JSON.stringify({ rows: result.rows }))
  }
} finally {
  await client.end()
}
