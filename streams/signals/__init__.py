"""`accessdrift ingest`: standard signals from identity providers, MDMs and HR systems, mapped
onto the contract streams and produced to Kafka.

- `settings.py`: the ingest settings file (transmitters, webhook sources, where to listen).
- `sets.py`: Security Event Tokens (RFC 8417) verified as RFC 8935 push delivery asks.
- `caep.py`, `risc.py`, `scim.py`: one mapping per event type of OpenID CAEP 1.0, RISC 1.0
  and SCIM events (RFC 9967), all delivered as SETs.
- `mapping.py`: what the mappings share (subjects to keys, event times, event ids).
- `webhooks.py`: Standard Webhooks signatures and the declarative mapping of a source's JSON.
- `receiver.py`: the HTTP shell: verify, map, produce with `acks=all`, and only then answer.

Every mapping writes partial updates (`"update": "partial"`, see `models/events.py`): a signal
knows one thing about its subject, and must never be read as a snapshot of everything else.
"""
