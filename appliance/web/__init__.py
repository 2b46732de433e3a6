"""Web room: the Litestar app, its guards, templates and static files (nothing from a CDN)."""
