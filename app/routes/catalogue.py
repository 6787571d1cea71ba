"""/v1/models, /v1/scores, /v1/datasets and /v1/leaderboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from zoorank_app import deletion
from zoorank_app import request_rules as rules
from zoorank_app.db import crud
from zoorank_app.db.models import Dataset
from zoorank_app.deps import get_session, get_settings_dep, require_writer
from zoorank_app.export import CSV_RESPONSE, FORMAT_HELP, ExportFormat, csv_response, wants_csv
from zoorank_app.problems import ProblemError, problem_responses
from zoorank_app.schemas import (
    DatasetPublic,
    DatasetsPublic,
    LeaderboardPublic,
    LeaderboardRow,
    ModelCreate,
    ModelPublic,
    ModelsPublic,
    ScoreInfo,
    ScoresPublic,
)
from zoorank_app.services import catalogue as stored
from zoorank_app.services import leaderboard as boards
from zoorank_app.settings import Settings

from zoorank.data import DatasetIdentity, class_sizes, list_builtin_datasets, load_dataset
from zoorank.errors import ZoorankError
from zoorank.export import leaderboard_table
from zoorank.policy import DEFAULT_RANKING, describe, score_catalogue
from zoorank.scores import get_score
from zoorank.zoo import ModelSpec, get_model_spec, list_models

router = APIRouter(prefix="/v1")


@router.get("/scores", response_model=ScoresPublic, tags=["scores"])
def scores() -> ScoresPublic:
    data = [ScoreInfo(**row) for row in score_catalogue()]
    return ScoresPublic(
        data=data, count=len(data), default_ranking=DEFAULT_RANKING.to_dict(), summary=describe()
    )


@router.get("/models", response_model=ModelsPublic, tags=["models"], responses=problem_responses(503))
def models(session: Session = Depends(get_session)) -> ModelsPublic:
    data = [_public(get_model_spec(n), builtin=True) for n in list_models()]
    data += [
        ModelPublic(
            name=r.name,
            architecture=r.architecture,
            weights=r.weights,
            imagenet_top1=r.imagenet_top1,
            description=r.description,
            builtin=False,
        )
        for r in crud.registered_models(session)
    ]
    return ModelsPublic(data=data, count=len(data))


@router.post(
    "/models",
    status_code=201,
    response_model=ModelPublic,
    tags=["models"],
    responses=problem_responses(400, 401, 409, 422, 503),
    dependencies=[Depends(require_writer)],
)
def register_model(
    body: ModelCreate,
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> ModelPublic:
    spec = stored.register_model(
        settings,
        session,
        name=body.name,
        architecture=body.architecture,
        weights=body.weights,
        imagenet_top1=body.imagenet_top1,
        description=body.description,
    )
    return _public(spec, builtin=False, description=body.description)


def _public(spec: ModelSpec, *, builtin: bool, description: str | None = None) -> ModelPublic:
    return ModelPublic(
        name=spec.name,
        architecture=spec.architecture,
        weights=spec.weights,
        imagenet_top1=spec.imagenet_top1,
        description=spec.description if description is None else description,
        builtin=builtin,
    )


@router.get("/datasets", response_model=DatasetsPublic, tags=["datasets"], responses=problem_responses(503))
def datasets(
    session: Session = Depends(get_session),
    settings: Annotated[Settings | None, Depends(get_settings_dep)] = None,
) -> DatasetsPublic:
    """Built-in datasets and uploads, with their class names and images per class (an upload's
    only with ``settings``, where its files are)."""
    data = [DatasetPublic(**row) for row in list_builtin_datasets()]
    data += [_dataset_public(d) for d in crud.list_uploaded(session)]
    if settings is not None:
        data = [_with_class_sizes(d, settings) for d in data]
    return DatasetsPublic(data=data, count=len(data))


def _with_class_sizes(public: DatasetPublic, settings: Settings) -> DatasetPublic:
    """An upload with its class names and images per class, from its folder's listing (no image
    is read or hashed: the stored fingerprint stands for the content); as it was when its files
    cannot be read."""
    if not public.ref.startswith("upload:") or public.fingerprint is None:
        return public
    expect = DatasetIdentity(public.ref.removeprefix("upload:"), public.fingerprint)
    try:
        data = load_dataset(public.ref, upload_dir=settings.upload_dir, expect=expect)
    except ZoorankError:
        return public
    sizes = class_sizes(data.labels, data.num_classes)
    return public.model_copy(update={"class_names": list(data.class_names), "class_images": sizes})


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetPublic,
    tags=["datasets"],
    responses={
        200: {"model": DatasetPublic, "description": "the same content is stored already: that dataset"},
        **problem_responses(400, 401, 413, 422, 503),
    },
    dependencies=[Depends(require_writer)],
)
def upload_dataset(
    file: UploadFile = File(..., description="zip or tar archive of CLASS/IMAGE files"),
    name: str = Form(""),
    session: Session = Depends(get_session),
    settings: Settings = Depends(get_settings_dep),
) -> JSONResponse:
    """201 with a new dataset; 200 with the stored one when its content (fingerprint) is already
    there, however packed: uploads are deduplicated. ``Location`` names it either way."""
    row, created = stored.add_upload(settings, session, file.file, name=name or file.filename or "")
    return JSONResponse(
        _dataset_public(row).model_dump(),
        status_code=201 if created else 200,
        headers={"Location": f"/v1/datasets/{row.id}"},
    )


def _dataset_public(row: Dataset) -> DatasetPublic:
    return DatasetPublic(
        ref=f"upload:{row.id}",
        description=row.name,
        classes=row.num_classes,
        images=row.num_images,
        fingerprint=row.fingerprint,
    )


@router.delete(
    "/datasets/{dataset_id}",
    status_code=204,
    tags=["datasets"],
    responses=problem_responses(401, 404, 409, 503),
    dependencies=[Depends(require_writer)],
)
def delete_dataset(dataset_id: str, settings: Settings = Depends(get_settings_dep)) -> Response:
    """Delete an uploaded dataset (``ID`` or ``upload:ID``): its files and feature-cache entries.
    409 while a queued or running job reads it; finished jobs keep their results."""
    try:
        deletion.delete_dataset(settings, dataset_id)
    except deletion.NotFound as exc:
        raise ProblemError(404, "Not found", str(exc)) from None
    return Response(status_code=204)


@router.get(
    "/leaderboard",
    response_model=LeaderboardPublic,
    tags=["leaderboard"],
    responses={**problem_responses(422, 503), **CSV_RESPONSE},
)
def leaderboard(
    dataset: str = Query(
        ...,
        description="dataset reference; values of different datasets are never ranked together",
        json_schema_extra=rules.DATASET_REF,
    ),
    score: str | None = Query(
        None,
        description="rank by this score; omitted: the default ranking",
        json_schema_extra={"enum": rules.score_names()["enum"]},
    ),
    option_set: str | None = Query(None, description="key of an option set (default: the most recent)"),
    session: Session = Depends(get_session),
    format: Annotated[ExportFormat | None, Query(description=FORMAT_HELP)] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> LeaderboardPublic | Response:
    """Models on a dataset, best first; as CSV (``format=csv``), one row per model."""
    public = leaderboard_of(session, dataset=dataset, score=score, option_set=option_set)
    if wants_csv(accept, format):
        name = f"zoorank-leaderboard-{dataset}-{score or 'default'}.csv"
        return csv_response(leaderboard_table(public.model_dump(mode="json")), name)
    return public


def leaderboard_of(
    session: Session, *, dataset: str, score: str | None, option_set: str | None
) -> LeaderboardPublic:
    """The leaderboard as the API answers it (the page renders the same)."""
    board = boards.leaderboard(session, dataset=dataset, score=score, option_set=option_set)
    data = [LeaderboardRow(**row) for row in board["rows"]]
    return LeaderboardPublic(
        dataset=dataset,
        score=score,
        direction=get_score(score).direction if score else "higher",
        policy=board["policy"],
        rule=board["rule"],
        left_out=board["left_out"],
        uncertainty=board["uncertainty"],
        option_set=board["option_set"],
        option_sets=board["option_sets"],
        data=data,
        count=len(data),
        confirmed=board["confirmed"],
    )
