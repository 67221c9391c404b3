"""The data of accessdrift: input contract, engine messages and state, findings, policy."""
