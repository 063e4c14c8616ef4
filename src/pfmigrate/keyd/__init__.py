"""``pfmigrate keyd``: pfmigrate's key engine as a PF_KEY service for many processes."""
