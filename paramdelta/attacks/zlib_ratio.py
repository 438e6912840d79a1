"""zlib ratio (Carlini et al. 2021, "Extracting Training Data from Large Language Models").

The loss is divided by the text's zlib entropy, the byte length of its zlib-compressed
UTF-8 encoding at the default level (as in the code of Min-K% and Min-K%++): text that is
easy for the model but not generically compressible is suspicious.
"""

import zlib

from paramdelta.attacks.base import Attack, Document


def zlib_length(text: str) -> int:
    """Byte length of the zlib-compressed UTF-8 text."""
    return len(zlib.compress(text.encode("utf-8")))


class ZlibAttack(Attack):
    """Score = -(mean token NLL / zlib length)."""

    name = "zlib"

    def score(self, document: Document, k: float | None = None) -> float:
        return -document.target.nll / zlib_length(document.text)
