"""Mobile IPv6 agents: binding state, policy sets, movement driving MIGRATE."""
