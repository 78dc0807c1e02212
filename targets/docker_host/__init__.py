"""The embedded default target: one Docker host with a registry, PostgreSQL and HAProxy."""
