"""Schemathesis hooks for docs/openapi.json, loaded through SCHEMATHESIS_HOOKS by
schemathesis_peer.py: how to put on the wire the media types schemathesis does not know.
"""

import schemathesis

# RFC 8417 §2.3: a Security Event Token is sent as the text of its compact JWS.
schemathesis.serializer.alias("application/secevent+jwt", "text/plain")
