"""Text metrics: perplexity (:mod:`~metrix.text.perplexity`), BERTScore metrics
(:mod:`~metrix.text.bertscore`) and their maths (:mod:`~metrix.text.bertscore_math`).
"""

from metrix.text.bertscore import (
    BERTScore,
    BERTScoreBufferState,
    BERTScoreIdf,
    BERTScoreIdfState,
    BERTScorePairs,
    BERTScoreResult,
    BERTScoreSums,
    load_bert_encoder,
)
from metrix.text.perplexity import Perplexity, token_nll

__all__ = [
    "Perplexity",
    "token_nll",
    "BERTScore",
    "BERTScoreBufferState",
    "BERTScoreIdf",
    "BERTScoreIdfState",
    "BERTScorePairs",
    "BERTScoreResult",
    "BERTScoreSums",
    "load_bert_encoder",
]
