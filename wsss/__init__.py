"""wsss: weakly supervised semantic segmentation from image-level tags.

Two published systems share one set of parts here:

* AffinityNet / PSA (Ahn & Kwak, CVPR 2018): CAMs -> affinity labels -> AffinityNet ->
  random walk -> dense CRF -> pseudo labels -> segmentation network.
* SSNet (Zeng et al., ICCV 2019): joint saliency detection and weakly supervised segmentation.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import wsss` stays light; `wsss.Predictor` loads torch and the models on first use.
    if name == "Predictor":
        from .inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'wsss' has no attribute {name!r}")
