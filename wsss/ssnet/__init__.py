"""SSNet (Zeng et al., ICCV 2019): joint saliency detection and weakly supervised segmentation.

    losses.py    saliency aggregation S = sum_i v_i H_i, Lc, Ls1, Ls2 (pure functions)
    saliency.py  the saliency map at inference: upsampled before or after aggregation, CRF
    train.py     `wsss train-ssnet --stage 1|2`
    mine.py      `wsss make-ssnet-pseudo`: pseudo labels mined by a trained SSNet
    evaluate.py  `wsss eval-ssnet`, `wsss eval-ssnet-pseudo`
    eval_saliency.py  `wsss eval-saliency`: saliency benchmarks (ECSSD, DUTS-TE)
    pipeline.py  `wsss run` with ``pipeline: ssnet``
"""
