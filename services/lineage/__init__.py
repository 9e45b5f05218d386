"""lineage: bus events as OpenLineage run events — batches, validations, trainings and scoring — sent to a file
and/or an HTTP endpoint such as Marquez (MLBUS_LINEAGE_FILE, MLBUS_LINEAGE_URL)."""
