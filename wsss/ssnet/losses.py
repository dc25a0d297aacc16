"""SSNet (Zeng, Zhuge, Lu & Zhang, ICCV 2019): the saliency aggregation and the three losses.

The segmentation network gives C+1 class maps; H = softmax of its logits (H_0 background).
The saliency aggregation module (SAM) predicts, from the deep features, a score v_i in [0, 1]
for each foreground class i: how salient class i is in this image. The saliency map is then

    S = sum_{i=1..C} v_i H_i                                              (paper Eq. 1)

and trained against class-agnostic saliency masks, while the segmentation is trained with the
image-level labels (and, in stage 2, pseudo labels mined from stage 1):

    Lc  = BCE(sigmoid(mean_xy logits_i), t_i)  over foreground classes i    (classification)
    Ls1 = -mean_m [ y_m log S_m + (1 - y_m) log N_m ]                       (saliency)
    Ls2 = -mean_m log H_{l_m}(m), pseudo label l_m, 255 ignored             (stage 2)

Facts taken from the authors' code (zengxianyu/jsws): Lc pools the segmentation *logits* by a
spatial mean and applies sigmoid cross-entropy to the foreground classes; the not-salient
likelihood N pairs the background map H_0 with S (their ``cat((bg, fg))``); v comes from a
convolution as large as the whole stride-16 feature map followed by a sigmoid, i.e. a fully
connected layer on the deep features (here: global average pooling + a linear layer, so any
input size works). Their code feeds the probabilities (S, H_0) to ``nll_loss``, which is not a
log-likelihood; here everything is computed in log space, exactly: log S is a log-sum-exp of
log v_i + log H_i, so the loss stays finite when S underflows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..io import IGNORE_INDEX


def saliency_log_likelihoods(logits: torch.Tensor, v_logits: torch.Tensor, negative: str = "background"):
    """(log S, log N): log-likelihoods of "salient" and "not salient" at every pixel.

    N is H_0 (``negative="background"``, the reference code's pairing) or 1 - S
    (``"complement"``: 1 - S = H_0 + sum_i (1 - v_i) H_i, exact since sum_i H_i = 1).

    Args:
        logits: (B, C+1, H, W); v_logits: (B, C).
    Returns:
        two (B, H, W) tensors, each <= 0.
    """
    log_h = F.log_softmax(logits, dim=1)
    log_s = torch.logsumexp(log_h[:, 1:] + F.logsigmoid(v_logits)[:, :, None, None], dim=1)
    if negative == "background":
        log_n = log_h[:, 0]
    elif negative == "complement":
        terms = torch.cat([log_h[:, :1], log_h[:, 1:] + F.logsigmoid(-v_logits)[:, :, None, None]], dim=1)
        log_n = torch.logsumexp(terms, dim=1)
    else:
        raise ValueError(f"negative must be 'background' or 'complement', not {negative!r}")
    return log_s, log_n


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lc: sigmoid cross-entropy of the spatially averaged foreground logits.

    Args:
        logits: (B, C+1, h, w) segmentation logits; labels: (B, C) multi-hot image labels.
    Returns:
        scalar, mean over images and classes.
    """
    pooled = logits[:, 1:].mean(dim=(2, 3))
    return F.binary_cross_entropy_with_logits(pooled, labels.to(pooled.dtype))


def saliency_loss(logits: torch.Tensor, v_logits: torch.Tensor, target: torch.Tensor,
                  negative: str = "background") -> torch.Tensor:
    """Ls1: pixel-wise cross-entropy of the aggregated saliency against a binary mask.

    Args:
        logits: (B, C+1, H, W) at the mask's resolution; v_logits: (B, C).
        target: (B, H, W) long: 1 salient, 0 not, 255 ignored (crop padding).
    Returns:
        scalar, mean over the pixels that are not ignored (0 when there are none).
    """
    log_s, log_n = saliency_log_likelihoods(logits, v_logits, negative)
    valid = target != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    salient = target == 1
    nll = torch.where(salient, -log_s, -log_n)
    return nll[valid].mean()


def pseudo_label_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Ls2: pixel-wise cross-entropy against (B, H, W) pseudo labels, 255 ignored."""
    return F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)


def restricted_probabilities(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax over background and the image's own classes only (the others get probability 0).

    The mining step of stage 2: the segmentation of a training image may only use the classes
    its image-level label names. (The reference code multiplies the other logits by 0, which
    leaves them in the softmax; here they are removed.)

    Args:
        logits: (B, C+1, H, W); labels: (B, C) multi-hot.
    Returns:
        (B, C+1, H, W) probabilities, zero on absent classes.
    """
    keep = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1) > 0.5
    masked = logits.masked_fill(~keep[:, :, None, None], float("-inf"))
    return F.softmax(masked, dim=1)
