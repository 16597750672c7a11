"""One spelling of a serial or an email is one key, in every command.

Two spellings are the same when they are equal after Unicode normalisation (NFKC: the composed
and decomposed ``Å`` alike, full-width digits as digits, a non-breaking space as a space) and
full case folding (``ß1`` and ``SS1``, ``Å1`` and ``å1``), with surrounding white space
ignored. The import, the lookups and the de-duplication of bulk commands all compare through
``fold``, so no two of them can disagree about which device a serial names.
"""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """The key a serial or an email is compared by."""
    text = text.strip()
    if text.isascii():
        # ASCII is already in NFKC, and its full case folding is its lower case.
        return text.lower()
    # Folding can leave a string that is not in NFKC any more (a composed letter's case fold is
    # not always composed), so it is normalised on both sides of the fold.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return folded.strip()
