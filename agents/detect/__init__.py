"""The offline TGE detector: is a text an announcement, and of what.

The deterministic fallback of the pipeline (no network, no model): a
language model layer may wrap :func:`detect` and send only the
:attr:`Detection.uncertain` documents to the model.

Example:
    >>> from agents.detect import detect
    >>> d = detect("Story Protocol TGE is tomorrow", "The $IP token goes live.",
    ...            published="2025-02-12")
    >>> d.is_announcement, d.ticker, d.date
    (True, 'IP', '2025-02-13')
"""

from agents.detect.detector import THRESHOLD, UNCERTAIN_BAND, Detection, detect

__all__ = ["THRESHOLD", "UNCERTAIN_BAND", "Detection", "detect"]
