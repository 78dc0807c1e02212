import type { Metadata } from 'next'
import type React from 'react'

export const metadata: Metadata = {
  title: process.env.NEXT_PUBLIC_SITE_NAME || 'Flow Masters',
}

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  )
}
