"""The system under test: starting, pinning and stopping deployments, faults, resources, the consistency audit,
traces, complexity counts, and external targets."""
