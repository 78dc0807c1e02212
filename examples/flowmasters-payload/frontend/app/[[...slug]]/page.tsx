import { notFound } from 'next/navigation'

import { findPage, listPages, paragraphs } from '../backend'
import { VersionBadge } from '../version-badge'

// Incremental static regeneration: rendered on the first request (nothing at build time, when
// the backend is not there), then served from Next.js's cache and rendered again in the
// background once it is older than PAGE_SECONDS. Next.js sends `s-maxage=1`, so the CDN in
// front keeps each page for a second too. (A literal: Next.js reads it at build time.)
export const revalidate = 1
export const dynamicParams = true

export async function generateStaticParams(): Promise<{ slug: string[] }[]> {
  return []
}

const version = process.env.APP_VERSION || 'dev'
const site = process.env.NEXT_PUBLIC_SITE_NAME || 'Flow Masters'

export default async function SitePage({ params }: { params: Promise<{ slug?: string[] }> }) {
  const { slug } = await params
  if (slug && slug.length > 1) notFound()
  return (
    <main data-version={version}>
      {slug ? await OnePage(slug[0]) : await Home()}
      <VersionBadge />
    </main>
  )
}

async function Home() {
  const pages = await listPages()
  return (
    <>
      <h1>{site}</h1>
      <ul>
        {pages.map((page) => (
          <li key={page.id} data-slug={page.slug}>
            <a href={`/${page.slug}`}>
              <strong>{page.title}</strong>
            </a>
            {page.summary ? <p className="summary">{page.summary}</p> : null}
          </li>
        ))}
      </ul>
    </>
  )
}

async function OnePage(slug: string) {
  const page = await findPage(slug)
  if (!page) notFound()
  return (
    <article data-slug={page.slug}>
      <h1>{page.title}</h1>
      {page.summary ? <p className="summary">{page.summary}</p> : null}
      {paragraphs(page).map((text, i) => (
        <p key={i}>{text}</p>
      ))}
    </article>
  )
}

