"""Projections: pure folds of events into state. The registry, the deployer and the auditor's replay use
these same functions, so the state rebuilt from audit.log is the state the services had."""
