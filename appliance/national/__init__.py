"""National room: indicators as data, disclosure control, aggregation across tenants, DHIS2 export.

Counting runs inside each tenant under its own role and only counts leave it (issue 10 and later)."""
