"""The substrate: what every layer stands on — database and pool, tenancy, migrations, identity,
the record, the audit trail and keys. It imports no layer."""
