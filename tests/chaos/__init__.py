"""The reliability suite (`scripts/chaos`): faults, load and bad input against real local brokers, every
result counted by a checker that reads everything back — Jepsen-style, not pass/fail alone."""
