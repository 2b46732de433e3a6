"""Clinical layer: patients, encounters, problems, allergies, medications, orders, results, notes."""
