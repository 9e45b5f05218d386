"""auditor: every event that crosses the bus, appended to audit.log as a hash-chained record."""
