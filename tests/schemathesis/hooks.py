"""schemathesis hooks for tenscale (loaded through SCHEMATHESIS_HOOKS by run.sh).

The policy endpoints read and answer `application/hujson`: the policy as text, JSON with
comments and trailing commas. schemathesis knows no such media type; both ways it is text.
"""

import schemathesis

# Sent as text, exactly as the generated string reads (the document's schema is `type: string`).
schemathesis.serializer.alias("application/hujson", "text/plain")


@schemathesis.deserializer("application/hujson")
def hujson_as_text(ctx, response):
    """The answer is the stored document, which the document describes as a string."""
    return response.text
