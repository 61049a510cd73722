"""The honest Python baseline for bench/http_load.sh: what a user would write instead of this service.

FastAPI + a pydantic request model + one onnxruntime session (1 intra-op thread, like the service's
worker) and the same response shape as `POST /v1/predict` for the card's task: the reconstruction
error (mean over features of ((x - x̂) / std)², std from the model card) for an autoencoder, the class
and per-class probabilities for a classifier, the value for a regressor (cards with one float32
input, as skl2onnx exports them).

Run it the way a user would, one uvicorn worker:

    MODEL_DIR=inference-image/model/wbc-autoencoder \
    python -m uvicorn --app-dir inference-image/bench fastapi_server:app \
        --host 127.0.0.1 --port 8091 --workers 1 --no-access-log --log-level warning

`--no-access-log`: the Rust service does not log per request either. uvicorn picks uvloop/httptools
when they are installed (`uvicorn[standard]`), else asyncio + h11; http_load.sh reports which.
The handler is `async def`: the forward pass takes microseconds, so running it on the event loop is
faster than FastAPI's thread pool (a plain `def` handler), i.e. the stronger baseline.
"""

import json
import os
import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel, Field

MODEL_DIR = Path(
    os.environ.get("MODEL_DIR", Path(__file__).resolve().parent.parent / "model" / "wbc-autoencoder")
)
CARD = json.loads((MODEL_DIR / "model_card.json").read_text())
WIDTH = len(CARD["features"])
INV_STD = 1.0 / np.array([f["std"] for f in CARD["features"]], dtype=np.float64)
THRESHOLD = float(CARD["score"].get("threshold") or 0.5)
MAX_ROWS = 1024

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
SESSION = ort.InferenceSession(
    str(MODEL_DIR / CARD["model_file"]), options, providers=["CPUExecutionProvider"]
)
INPUT = CARD["input_name"]
OUTPUT = CARD["output_name"]


class PredictRequest(BaseModel):
    rows: Annotated[
        list[Annotated[list[float], Field(min_length=WIDTH, max_length=WIDTH)]],
        Field(min_length=1, max_length=MAX_ROWS),
    ]


class ModelRef(BaseModel):
    name: str
    version: str


class RowResult(BaseModel):
    row: int
    reconstruction_error: float
    anomaly_score: float
    is_anomaly: bool


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    threshold: float
    results: list[RowResult]


MODEL_REF = ModelRef(name=CARD["name"], version=CARD["version"])
app = FastAPI(title=f"{CARD['name']} (Python baseline)")
TASK = CARD.get("task", "autoencoder")


if TASK == "autoencoder":
    @app.post("/v1/predict", response_model=PredictResponse)
    async def predict(req: PredictRequest) -> PredictResponse:
        x = np.asarray(req.rows, dtype=np.float32)
        (xhat,) = SESSION.run([OUTPUT], {INPUT: x})
        d = (x.astype(np.float64) - xhat.astype(np.float64)) * INV_STD
        errors = (d * d).mean(axis=1)
        return PredictResponse(
            request_id=str(uuid.uuid4()),
            model=MODEL_REF,
            threshold=THRESHOLD,
            results=[
                RowResult(
                    row=i,
                    reconstruction_error=e,
                    anomaly_score=e / THRESHOLD,
                    is_anomaly=e > THRESHOLD,
                )
                for i, e in enumerate(errors.tolist())
            ],
        )

elif TASK == "classifier":
    # The same answer as the service's for a classifier card: the predicted class (the positive class
    # above the decision threshold for a binary one, else the most probable), its probability and
    # every class's probability (from a probability tensor or ZipMap's list of dicts).
    CLASSES = CARD["classifier"]["classes"]
    POSITIVE = (CLASSES.index(CARD["classifier"].get("positive_class") or CLASSES[1])
                if len(CLASSES) == 2 else None)

    class ClassResult(BaseModel):
        row: int
        label: str
        probability: float
        probabilities: dict[str, float]

    class ClassifierResponse(BaseModel):
        request_id: str
        model: ModelRef
        threshold: float | None = None
        positive_class: str | None = None
        results: list[ClassResult]

    @app.post("/v1/predict", response_model=ClassifierResponse, response_model_exclude_none=True)
    async def predict_class(req: PredictRequest) -> ClassifierResponse:
        x = np.asarray(req.rows, dtype=np.float32)
        (out,) = SESSION.run([OUTPUT], {INPUT: x})
        if isinstance(out, list):  # ZipMap: one dict per row
            keyed = [{str(k): v for k, v in m.items()} for m in out]
            p = np.asarray([[m[c] for c in CLASSES] for m in keyed], dtype=np.float64)
        else:
            p = np.asarray(out, dtype=np.float64)
        if POSITIVE is not None:
            predicted = np.where(p[:, POSITIVE] > THRESHOLD, POSITIVE, 1 - POSITIVE)
        else:
            predicted = p.argmax(axis=1)
        return ClassifierResponse(
            request_id=str(uuid.uuid4()),
            model=MODEL_REF,
            threshold=THRESHOLD if POSITIVE is not None else None,
            positive_class=CLASSES[POSITIVE] if POSITIVE is not None else None,
            results=[
                ClassResult(row=i, label=CLASSES[c], probability=float(row[c]),
                            probabilities=dict(zip(CLASSES, row.tolist())))
                for i, (c, row) in enumerate(zip(predicted.tolist(), p))
            ],
        )

else:
    class ValueResult(BaseModel):
        row: int
        value: float

    class RegressorResponse(BaseModel):
        request_id: str
        model: ModelRef
        results: list[ValueResult]

    @app.post("/v1/predict", response_model=RegressorResponse)
    async def predict_value(req: PredictRequest) -> RegressorResponse:
        x = np.asarray(req.rows, dtype=np.float32)
        (out,) = SESSION.run([OUTPUT], {INPUT: x})
        return RegressorResponse(
            request_id=str(uuid.uuid4()),
            model=MODEL_REF,
            results=[ValueResult(row=i, value=v) for i, v in enumerate(np.asarray(out).ravel().tolist())],
        )
