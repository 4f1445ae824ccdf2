"""Text metrics: perplexity (:mod:`~metrix.text.perplexity`), BERTScore metrics
(:mod:`~metrix.text.bertscore`) and their maths (:mod:`~metrix.text.bertscore_math`), text
generation: BLEU (:mod:`~metrix.text.bleu`), chrF (:mod:`~metrix.text.chrf`), ROUGE
(:mod:`~metrix.text.rouge`), WER and CER (:mod:`~metrix.text.error_rates`).
"""

import importlib

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
from metrix.text.bleu import BLEU, bleu_score, bleu_statistics, bleu_token_ids, bleu_tokens
from metrix.text.chrf import CHRF, chrf_score, chrf_statistics, chrf_token_ids, chrf_words
from metrix.text.error_rates import CER, WER, ErrorRateState, edit_distance
from metrix.text.perplexity import Perplexity, token_nll
from metrix.text.rouge import ROUGE, ROUGE_KEYS, lcs_length, rouge_counts

# Everything the submodules export (their own __all__), without repeating the names here.
_SUBMODULES = ("perplexity", "bertscore", "rouge", "error_rates", "bleu", "chrf")
__all__ = [name for sub in _SUBMODULES for name in importlib.import_module(f"{__name__}.{sub}").__all__]
