import { listPages } from './backend'

// Rendered per request from the backend's REST API: content edited in Payload shows at once.
export const dynamic = 'force-dynamic'

const version = process.env.APP_VERSION || 'dev'

export default async function Home() {
  const pages = await listPages()
  return (
    <main data-version={version}>
      <h1>{process.env.NEXT_PUBLIC_SITE_NAME || 'Flow Masters'}</h1>
      <ul>
        {pages.map((page) => (
          <li key={page.id} data-slug={page.slug}>
            <strong>{page.title}</strong>
            {page.summary ? <p className="summary">{page.summary}</p> : null}
          </li>
        ))}
      </ul>
      <footer>frontend {version}</footer>
    </main>
  )
}
