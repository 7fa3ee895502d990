"""Response bodies of the HTTP API (FastAPI ``response_model``s, so OpenAPI documents them).

Label names and head names are keys taken from the manifest at run time; nothing here lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.decision_schema import DecisionBody
from service.inference.classifier import ClassifyResult, TaskPrediction
from service.inference.thresholds import decide_task_b, presence_probability

API_VERSION = "1"


class LabelPrediction(BaseModel):
    label: str = Field(
        description="The ensemble's label: its voters' majority vote, or the argmax of their (weighted) mean "
        "probability, as the manifest's rule for the head says.",
        examples=["positive"],
    )
    scores: dict[str, float] = Field(
        description="Mean member probability of each label, weighted where the manifest gives the head "
        "weights (they sum to 1).",
        examples=[{"negative": 0.1, "neutral": 0.3, "positive": 0.6}],
    )


class IntensityPrediction(LabelPrediction):
    code: str = Field(description="The label's short code from the manifest.", examples=["F"])


class TextUsed(BaseModel):
    value: str = Field(description="The text the models read.")
    source: Literal["ocr", "request"] = Field(description="'request' if the client sent it, else 'ocr'.")


class TextStepBody(BaseModel):
    step: str = Field(
        description="input, clean, language, transliterate, translate.en-hi or translate.hi-en", examples=["clean"]
    )
    text: str = Field(description="The text after this step.")
    detail: dict[str, Any] = Field(
        default_factory=dict, description="What the step found or removed (language scores, URLs, errors)."
    )


class Explanation(BaseModel):
    text_steps: list[TextStepBody] = Field(
        description="The text path, in order; the last text is what the models read."
    )
    text_config: dict[str, Any] = Field(description="Which text steps are on and which translator is used.")
    members: list[str] = Field(
        description="The ensemble members that ran (text-only requests: those that read only text)."
    )


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model_version": "2024.1",
                "task_a": {"label": "positive", "scores": {"negative": 0.1, "neutral": 0.3, "positive": 0.6}},
                "task_b": {"humorous": True, "sarcastic": False, "offensive": False, "motivational": False},
                "task_c": {
                    "humour": {
                        "label": "funny",
                        "code": "F",
                        "scores": {"not_funny": 0.2, "funny": 0.5, "very_funny": 0.2, "hilarious": 0.1},
                    }
                },
                "text": {"value": "when the code finally compiles", "source": "ocr"},
                "votes": {"clip_text": {"sentiment": "positive", "humour": "funny"}},
                "timings_ms": {
                    "decode": 2.1,
                    "ocr": 900.0,
                    "tokenize": 0.2,
                    "preprocess": 3.0,
                    "inference.clip_text": 4.0,
                    "inference": 4.0,
                    "vote": 0.1,
                    "total": 910.0,
                },
                "notice": "",
                "api_version": "1",
                "request_id": "3f2a9c0d5e6b4a1f8c7d2e1b0a9f8e7d",
                "language": "en",
                "task_b_scores": {"humorous": 0.8, "sarcastic": 0.4, "offensive": 0.1, "motivational": 0.05},
                "thresholds": {},
            }
        }
    )

    model_version: str = Field(description="The model repository's version (manifest repository_version).")
    task_a: LabelPrediction = Field(description="Task A: overall sentiment.")
    task_b: dict[str, bool] = Field(
        description="Task B: is the emotion present? Without a threshold for it: the ensemble's label for its "
        "Task C intensity (majority vote, or the manifest's rule for the head) is above the lowest level (the "
        "paper's rule). It is NOT task_b_scores >= 0.5: "
        "the vote counts members, the score averages their probabilities, so humorous can be false with a "
        "score of 0.52 (most members voted 'not funny'). With a threshold (request or MEMOTION_TASK_THRESHOLDS): "
        "task_b_scores >= threshold."
    )
    task_c: dict[str, IntensityPrediction] = Field(description="Task C: intensity per emotion head.")
    text: TextUsed
    votes: dict[str, dict[str, str]] = Field(description="Each ensemble member's own label per head.")
    timings_ms: dict[str, float] = Field(
        description=(
            "Milliseconds per stage, for the stages that ran: decode, ocr (absent when the request "
            "carried the text), tokenize, preprocess, inference.<member> per ensemble member, "
            "inference (their sum), vote, total (decode to vote). The same names label the "
            "memotion_stage_seconds metric."
        ),
    )
    notice: str = Field(description="The model repository's notice (for example about its training data).")
    api_version: str = Field(default=API_VERSION, description="Version of this response format.")
    request_id: str | None = Field(default=None, description="The request's id (also in the X-Request-ID header).")
    language: str | None = Field(
        default=None,
        description="Language of the text: en, hi (Devanagari), hi-Latn (romanised Hindi / "
        "Hindi-English mix), other, unknown. Absent when language identification is off.",
    )
    task_b_scores: dict[str, float] = Field(
        default_factory=dict,
        description="P(emotion present) = 1 - P(lowest Task C intensity) under the members' mean probabilities, "
        "per emotion. What a threshold is compared with; without one, task_b comes from the vote instead "
        "(see task_b).",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Task B thresholds applied (emotion present iff its score >= threshold); "
        "emotions not listed use the voted intensity.",
    )
    explain: Explanation | None = Field(
        default=None, description="Only with ?explain=true: the text path step by step."
    )
    decision: DecisionBody | None = Field(
        default=None,
        description="What the client's moderation policy makes of this meme: allow, review or block, and why.",
    )


class ErrorDetail(BaseModel):
    code: str = Field(examples=["image_too_large"])
    message: str = Field(examples=["the image is 20000x20000 = 400000000 pixels; at most 36000000 pixels are allowed"])
    status: int = Field(examples=[413])


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model_version: str
    backend: str
    ocr: str
    models: list[str]


def _label(prediction: TaskPrediction) -> LabelPrediction:
    return LabelPrediction(label=prediction.label, scores=prediction.scores)


def _intensity(prediction: TaskPrediction) -> IntensityPrediction:
    return IntensityPrediction(label=prediction.label, code=prediction.code, scores=prediction.scores)


def classify_response(
    result: ClassifyResult,
    *,
    model_version: str,
    task_a: str,
    task_c: list[str],
    notice: str,
    task_b_names: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    request_id: str | None = None,
    explain: dict[str, Any] | None = None,
) -> ClassifyResponse:
    """The response body. ``task_b_names`` (head -> emotion) enables ``task_b_scores`` and
    ``thresholds``; ``explain`` (text_config, members) adds the text steps."""
    task_b = dict(result.task_b)
    scores: dict[str, float] = {}
    if task_b_names:
        for head in task_c:
            head_scores = result.tasks[head].scores
            scores[task_b_names[head]] = presence_probability(head_scores, next(iter(head_scores)))
        task_b = decide_task_b(task_b, scores, thresholds or {})
    explanation = None
    if explain is not None:
        explanation = Explanation(
            text_steps=[TextStepBody(step=s.step, text=s.text, detail=s.detail) for s in result.text_steps],
            text_config=explain.get("text_config", {}),
            members=list(explain.get("members", result.votes)),
        )
    return ClassifyResponse(
        model_version=model_version,
        task_a=_label(result.tasks[task_a]),
        task_b=task_b,
        task_c={name: _intensity(result.tasks[name]) for name in task_c},
        text=TextUsed(value=result.text, source=result.text_source),
        votes=result.votes,
        timings_ms=dict(result.timings_ms),
        notice=notice,
        request_id=request_id,
        language=result.language,
        task_b_scores=scores,
        thresholds=dict(thresholds or {}),
        explain=explanation,
    )
