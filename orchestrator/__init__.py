"""InfraBot Chains: the control plane (settings, errors, identity, authorization server, audit)."""
