"""The request path: each agent's service, admission, deadlines, codecs, replies, stats,
and the server that holds them."""
