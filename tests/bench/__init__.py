"""Benchmarks (`scripts/bench`): mlbus side by side with what a user would pick instead and with the
physical limit of each stage, as ratios measured in one run on one machine. Peers run in their own
virtualenv (var/bench-peers) and are never imported by the services."""
