"""Browser journeys through the tenant portal (Playwright driving Debian's chromium)."""
