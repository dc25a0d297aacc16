"""Segment one image with a model of `wsss export --format onnx`: onnxruntime, numpy and Pillow only.
Usage: python onnx_predict.py MODEL.onnx PHOTO.jpg MASK.png"""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
image = Image.open(sys.argv[2]).convert("RGB")
scale = min(1.0, int(meta["max_side"]) / max(image.size))  # large photos: shrunk first, as wsss does
seen = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR) if scale < 1 else image
logits = session.run(["logits"], {"image": np.asarray(seen, np.float32).transpose(2, 0, 1)[None]})[0][0]
probs = np.exp(logits - logits.max(axis=0))
probs /= probs.sum(axis=0)  # softmax over the classes, then each map up to the photo's size
mask = np.stack([np.asarray(Image.fromarray(p).resize(image.size, Image.BILINEAR)) for p in probs]).argmax(axis=0)
out = Image.fromarray(mask.astype(np.uint8), mode="P")
out.putpalette([v for colour in json.loads(meta["palette"]) for v in colour])
out.save(sys.argv[3])
print({name: int((mask == i).sum()) for i, name in enumerate(json.loads(meta["class_names"])) if (mask == i).any()})
