"""Store and artifact URLs as they may be shown: passwords replaced by ``***``."""

from __future__ import annotations

import re

MASK = "***"

# ``scheme://user:password@host``: the password runs to the last ``@`` of the URL, so that an
# unencoded ``@``, ``/``, ``?`` or ``#`` in it cannot leak its tail (masking too much is the safe
# side); whitespace ends a URL inside a message.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@?#\s]*):\S*@")
# libpq-style ``?password=...`` (and ``sslpassword``) query parameters.
_QUERY = re.compile(r"(?P<head>[?&](?:ssl)?password=)[^&#\s]*", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it masked (the rest left as it was)."""
    return _QUERY.sub(rf"\g<head>{MASK}", _USERINFO.sub(rf"\g<head>:{MASK}@", text))
