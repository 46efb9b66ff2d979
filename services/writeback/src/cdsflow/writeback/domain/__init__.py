"""Pure writeback logic: recommendations, the latest-per-patient store, RiskAssessments,
CDS Hooks requests, cards and discovery. No I/O here."""
