"""metrix: exact, mergeable, jit-safe metrics for JAX.

A metric is a frozen dataclass of configuration; ``get_state(**inputs)`` returns an immutable
state pytree; states ``merge`` across batches, devices and hosts; ``compute()`` gives values.
The layers and what may import what: docs/architecture.md.
"""

# ruff: noqa: I001  (the imports are grouped by layer, not sorted)

# The state algebra (metrix.core)
from metrix.core.fields import (
    EMPTY,
    chan_m2_field,
    chan_mean_field,
    concat_field,
    exact_sum_field,
    last_field,
    max_field,
    min_field,
    nested_field,
    static_field,
    sum_field,
    truncate_field,
)
from metrix.core.state import AutoState, AutoStateOutput, MergeError, State
from metrix.core.buffers import BufferState, CapacityOverflowError
from metrix.core.states import (
    AverageState,
    CollectFirstState,
    CollectState,
    EmptyState,
    HistogramState,
    LastState,
    MaxState,
    MeanCovState,
    MinState,
    SumState,
    WelfordState,
    chan_merge,
)
from metrix.core.metric import Metric
from metrix.core.keys import ContextKeyError, Key, MissingPathError, REQUIRED
from metrix.core.typecheck import InputTypeError, set_typechecking, typechecking
from metrix.core.masks import broadcast_mask
from metrix.core.tree import compute, empty_states, get_states, merge
from metrix.core.collection import Collection
from metrix.core.tree_metrics import NoopMetric, SkipIfMissing, TreeMap, TreeReduce, TreeState
from metrix.core.distributed import allreduce, merge_stacked, process_allreduce, register_allreduce

# Domains
from metrix.statistics import (
    Average,
    Histogram,
    Max,
    Min,
    Norm,
    Quantiles,
    Std,
    Sum,
    quantiles_from_histogram,
    tree_norm,
)
from metrix.classification import (
    Accuracy,
    AveragePrecision,
    BalancedAccuracy,
    BinaryAccuracy,
    BinnedScoresState,
    BrierScore,
    CalibrationState,
    CohenKappa,
    ConfusionMatrix,
    ConfusionState,
    ExpectedCalibrationError,
    F1Score,
    FBetaScore,
    LogLoss,
    MatthewsCorrCoef,
    Precision,
    PrecisionRecallCurve,
    Recall,
    ReliabilityDiagram,
    RocAuc,
    RocCurve,
    ScoresState,
    Specificity,
    UndefinedMetricWarning,
    balanced_accuracy_from_confusion,
    binarize,
    binary_average_precision,
    binary_distinct_points,
    binary_precision_recall_curve,
    binary_roc_auc,
    binary_roc_curve,
    binned_average_precision,
    binned_counts,
    binned_precision_recall_curve,
    binned_roc_auc,
    binned_roc_curve,
    brier_values,
    calibration_bins,
    calibration_error_from_bins,
    cohen_kappa_from_confusion,
    confidence_and_correct,
    confusion_counts,
    log_loss_values,
    matthews_corrcoef_from_confusion,
    multiclass_ovo_roc_auc,
    score_from_confusion,
    stat_scores,
    threshold_grid,
    top_k_correct,
)
from metrix.regression import (
    CoMomentState,
    ConcordanceCorrCoef,
    CosineSimilarity,
    ExplainedVariance,
    MAE,
    MAPE,
    MSE,
    MaxError,
    PearsonCorrCoef,
    R2Score,
    RMSE,
    SMAPE,
    SpearmanCorrCoef,
    absolute_error,
    absolute_percentage_error,
    average_ranks,
    concordance_from_moments,
    cosine_similarity,
    explained_variance_from_moments,
    pearson_from_moments,
    r2_from_moments,
    spearman_corrcoef,
    squared_error,
    symmetric_absolute_percentage_error,
)
from metrix.image import (
    MS_SSIM_BETAS,
    MultiScaleSSIM,
    PSNR,
    SSIM,
    gaussian_kernel,
    multiscale_ssim,
    psnr,
    ssim,
    ssim_and_contrast,
)
from metrix.segmentation import (
    Dice,
    MeanIoU,
    SoftDice,
    confusion_matrix,
    dice_from_confusion,
    iou_from_confusion,
    per_class_counts,
    soft_dice_sums,
)
from metrix.ranking import (
    DCG,
    HitRate,
    MAP,
    MRR,
    NDCG,
    PrecisionAtK,
    RecallAtK,
    average_precision,
    dcg,
    hit_rate,
    ndcg,
    precision_at_k,
    ranked_relevance,
    recall_at_k,
    reciprocal_rank,
    relevance_gains,
)
from metrix.text import (
    BERTScore,
    BERTScoreBufferState,
    BERTScoreIdf,
    BERTScoreIdfState,
    BERTScorePairs,
    BERTScoreResult,
    BERTScoreSums,
    BLEU,
    CER,
    CHRF,
    ErrorRateState,
    Perplexity,
    ROUGE,
    WER,
    bleu_score,
    chrf_score,
    edit_distance,
    load_bert_encoder,
    rouge_counts,
    token_nll,
)
from metrix.audio import SISDR, SISNR, SNR, si_sdr, si_snr, snr
from metrix.detection import DetectionBuffer, MeanAveragePrecision
from metrix.generative import (
    DensityCoverage,
    FID,
    InceptionScore,
    KID,
    PrecisionRecall,
    ReferenceStats,
    density_coverage,
    frechet_distance,
    inception_score,
    kid_subset_indices,
    polynomial_mmd,
    precision_recall,
)
from metrix.perceptual import (
    LPIPS,
    LPIPSDistances,
    LPIPSFromFeatures,
    LPIPSState,
    LPIPSWithDistances,
    LpipsVgg,
)
from metrix.losses import (
    Huber,
    L1,
    L2,
    Loss,
    LossState,
    NegativeCosineSimilarity,
    Schedule,
    SigmoidBinaryCrossEntropy,
    SigmoidFocalLoss,
    SoftmaxCrossEntropy,
    huber_values,
    l1_values,
    l2_values,
    negative_cosine_similarity_values,
    sigmoid_binary_cross_entropy_values,
    sigmoid_focal_values,
    softmax_cross_entropy_values,
    total_loss,
)
from metrix.metric_learning import (
    ArcFaceLoss,
    BatchHardMiner,
    CircleLoss,
    ContrastiveLoss,
    CosFaceLoss,
    HardNegativeMiner,
    LossTermsState,
    MinedIndices,
    MultiSimilarityLoss,
    NTXentLoss,
    ProxyAnchorLoss,
    ProxyNCALoss,
    SemiHardMiner,
    SupConLoss,
    TripletMarginLoss,
    TripletMarginMiner,
    circle_losses,
    contrastive_terms,
    margin_softmax_losses,
    multi_similarity_losses,
    ntxent_terms,
    pair_masks,
    pairwise_distances,
    proxy_anchor_terms,
    proxy_nca_losses,
    supcon_losses,
    triplet_margin_terms,
)
from metrix.bootstrap import Bootstrap, BootstrapState
from metrix.summaries import (
    ShowConfusionMatrix,
    ShowHistogram,
    ShowImages,
    apply_colormap,
    confusion_image,
    normalize_images,
)

# Running metrics (metrix.runtime) and the stateful layer
from metrix.runtime import (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    TensorBoardWriter,
    TrainMetrics,
    WandbWriter,
    evaluate,
    evaluate_scan,
    load_config,
    log_and_reset,
    pad_batch,
    plot,
    read_checkpoint_info,
    restore_states,
    save_states,
    window_step,
    write,
    flatten,
)
from metrix.stateful import Stateful

# Seed-compatible layers, importable as metrix.nnx, metrix.protocols, metrix.stateful
from metrix import nnx, protocols, stateful

__version__ = "0.1.0"
