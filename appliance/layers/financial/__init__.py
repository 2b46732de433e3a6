"""Financial layer: fee schedules, charges captured as reactions, invoices, claims, payments."""
