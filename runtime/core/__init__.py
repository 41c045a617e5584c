"""The ground floor every other part imports: issues, durations, the wire protocol, the handler context."""
