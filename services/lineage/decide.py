"""The lineage service's decisions, pure: bus records in, OpenLineage run events out (no I/O, no clock).

- a data batch is a dataset named after its content-addressed snapshot, as OpenLineage names files
  (`file` + path, `s3://bucket` + key, ...), so another tool reading the same snapshot joins the same node;
- data.batches: a run (START, COMPLETE at one time) of job `<dataset>.publish` writing the batch (its sha256
  as dataset version);
- data.validated: a run (START, then COMPLETE if passed, else FAIL) of `<dataset>.validate` reading the batch,
  with its columns (schema facet) and their profile (data-quality metrics) from the validation;
- models.trained: a run of `<model>.train` (START at the fit's start, COMPLETE at its end) reading the batches
  and writing the model version, a dataset `models/<model>/v<version>` in the jobs' namespace;
- inference.predictions: not one event per prediction. One run of `<model>.score` per model version and period
  of `period_s` (by the predictions' own time): START at the period's start when its first prediction is seen,
  COMPLETE at its end once the period is over; it reads the version, the requests topic (and the online
  features topic when it looked features up) and writes the predictions topic.
Run ids are uuid5 of the record's own ids, and event times are the records' times: a replay gives the same
events, so a lineage backend receiving one twice keeps one run.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence
from urllib.parse import urlsplit

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (data_quality_metrics_input_dataset as quality, dataset_type_dataset,
                                          dataset_version_dataset, documentation_dataset, error_message_run,
                                          input_statistics_input_dataset, job_type_job, nominal_time_run,
                                          output_statistics_output_dataset, processing_engine_run, schema_dataset)

from services.bus import BadInput
from services.bus.records import BatchRef, ColumnProfile, DataBatch, DataValidated, ModelTrained, Prediction

RUN_IDS = uuid.UUID("6f1c3c55-8f0e-4a53-9d1b-6c2f3f0a9e21")     # fixed: the same record gives the same run id
INTEGRATION = "MLBUS"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_AHEAD = timedelta(minutes=5)        # a prediction dated later than this after now opens no period: refused
MAX_NAME = 1024                         # a dataset's namespace or name (backends keep them in bounded columns)


class Unmappable(BadInput):
    """A record the mapper cannot turn into OpenLineage events (dead-lettered with the reason)."""


@dataclass(frozen=True)
class Places:
    """Where the events put things: jobs and model versions in `jobs` (a namespace such as "mlbus"), topics in
    `bus` (kafka://host:port, OpenLineage's naming of Kafka), under the catalogue's physical names."""

    jobs: str
    bus: str
    producer: str                          # a URI naming this emitter and its version
    topics: dict[str, str] = field(default_factory=dict)     # catalogue name → physical name


def run_id(*parts: str) -> str:
    return str(uuid.uuid5(RUN_IDS, "\x1f".join(parts)))


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def batch_place(places: Places, uri: str, dataset: str, batch_id: str) -> tuple[str, str]:
    """(namespace, name) of a batch: its snapshot's location as OpenLineage names files; without a URI (older
    records), the batch id in the jobs' namespace."""
    if not uri:
        return places.jobs, f"datasets/{dataset}/batches/{batch_id}"
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        place = "file", parts.path
    elif not parts.netloc:
        raise Unmappable(f"batch {batch_id}: URI {uri[:200]!r} names no host or bucket")
    else:
        place = f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")
    if not all(len(part) <= MAX_NAME and part.isprintable() for part in place):
        raise Unmappable(f"batch {batch_id}: URI {uri[:200]!r} is not a dataset name a lineage backend keeps "
                         f"(at most {MAX_NAME} printable characters)")
    return place


def version_place(places: Places, model: str, version: int) -> tuple[str, str]:
    return places.jobs, f"models/{model}/v{version}"


def topic_place(places: Places, topic: str) -> tuple[str, str]:
    return places.bus, places.topics.get(topic, topic)


def job(places: Places, name: str, processing: str, kind: str) -> Job:
    return Job(namespace=places.jobs, name=name, facets={"jobType": job_type_job.JobTypeJobFacet(
        processingType=processing, integration=INTEGRATION, jobType=kind, producer=places.producer)})


def event(places: Places, state: RunState, when: datetime, run: Run, of: Job,
          inputs: Sequence[InputDataset] = (), outputs: Sequence[OutputDataset] = ()) -> RunEvent:
    return RunEvent(eventType=state, eventTime=iso(when), run=run, job=of, inputs=list(inputs),
                    outputs=list(outputs), producer=places.producer)


def instant(places: Places, state: RunState, when: datetime, run: Run, of: Job,
            inputs: Sequence[InputDataset] = (), outputs: Sequence[OutputDataset] = ()) -> list[RunEvent]:
    """A run with no duration of its own (a publication, a validation): START and its end at one time, as the
    spec asks one START and one end per run."""
    return [event(places, RunState.START, when, Run(runId=run.runId), of, inputs, outputs),
            event(places, state, when, run, of, inputs, outputs)]


def version_facet(places: Places, version: str) -> dataset_version_dataset.DatasetVersionDatasetFacet:
    return dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version, producer=places.producer)


def schema_facet(places: Places, columns: Sequence[tuple[str, str]]) -> schema_dataset.SchemaDatasetFacet:
    return schema_dataset.SchemaDatasetFacet(fields=[
        schema_dataset.SchemaDatasetFacetFields(name=name, type=kind, ordinal_position=i + 1)
        for i, (name, kind) in enumerate(columns)], producer=places.producer)


def published(places: Places, batch: DataBatch) -> list[RunEvent]:
    """A batch was published: a run writing it."""
    namespace, name = batch_place(places, batch.uri, batch.dataset, batch.batch_id)
    output = OutputDataset(namespace=namespace, name=name, facets={
        "version": version_facet(places, batch.sha256),
        "datasetType": dataset_type_dataset.DatasetTypeDatasetFacet(datasetType="FILE", subType=batch.format,
                                                                    producer=places.producer)},
        outputFacets={"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
            rowCount=batch.rows, size=batch.size_bytes or None, fileCount=1, producer=places.producer)})
    run = Run(runId=run_id("publish", batch.batch_id))
    return instant(places, RunState.COMPLETE, batch.published_at, run,
                   job(places, f"{batch.dataset}.publish", "BATCH", "PUBLISH"), outputs=[output])


def column_metrics(profile: ColumnProfile) -> quality.ColumnMetrics:
    return quality.ColumnMetrics(nullCount=profile.missing, count=float(profile.count), min=profile.min,
                                 max=profile.max, quantiles=dict(profile.quantiles) or None)


def validated(places: Places, report: DataValidated) -> list[RunEvent]:
    """A batch was checked against its contract: a run reading it with its columns, COMPLETE or FAIL."""
    namespace, name = batch_place(places, report.uri, report.dataset, report.batch_id)
    facets: dict[str, Any] = {"version": version_facet(places, report.sha256)}
    if report.profile:
        facets["schema"] = schema_facet(places, [(p.name, p.kind) for p in report.profile])
    metrics = quality.DataQualityMetricsInputDatasetFacet(
        columnMetrics={p.name: column_metrics(p) for p in report.profile}, rowCount=report.rows,
        producer=places.producer)
    batch = InputDataset(namespace=namespace, name=name, facets=facets, inputFacets={"dataQualityMetrics": metrics})
    run_facets: dict[str, Any] = {}
    if not report.passed:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message="; ".join(f"{f.check}: {f.message}" for f in report.failures)[:4000] or "failed",
            programmingLanguage="PYTHON", producer=places.producer)
    run = Run(runId=run_id("validate", report.validation_id), facets=run_facets)
    state = RunState.COMPLETE if report.passed else RunState.FAIL
    return instant(places, state, report.validated_at, run,
                   job(places, f"{report.dataset}.validate", "BATCH", "VALIDATION"), inputs=[batch])


def training_input(places: Places, ref: BatchRef) -> InputDataset:
    namespace, name = batch_place(places, ref.uri, ref.dataset, ref.batch_id)
    return InputDataset(namespace=namespace, name=name, facets={"version": version_facet(places, ref.sha256)},
                        inputFacets={"inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                            rowCount=ref.rows, producer=places.producer)})


def model_version(places: Places, trained: ModelTrained) -> OutputDataset:
    namespace, name = version_place(places, trained.model, trained.version)
    kinds = {p.name: p.kind for p in trained.feature_profile}
    metric = trained.metrics.get(trained.metric)
    return OutputDataset(namespace=namespace, name=name, facets={
        "version": version_facet(places, trained.artifact_sha256),
        "schema": schema_facet(places, [(f, kinds.get(f, "feature")) for f in trained.features]),
        "datasetType": dataset_type_dataset.DatasetTypeDatasetFacet(datasetType="MODEL", subType=trained.estimator,
                                                                    producer=places.producer),
        "documentation": documentation_dataset.DocumentationDatasetFacet(
            description=f"{trained.model} v{trained.version}: {trained.estimator} ({trained.task}) predicting "
                        f"{trained.target}; {trained.metric} {metric if metric is not None else 'not measured'}; "
                        f"artifact {trained.artifact_uri}", producer=places.producer)})


def trained(places: Places, record: ModelTrained) -> list[RunEvent]:
    """A version was trained: START at the fit's start, COMPLETE at its end, batches in, the version out."""
    if record.duration_ms < 0:
        raise Unmappable(f"{record.model} v{record.version}: negative duration {record.duration_ms} ms")
    if not record.batches:
        raise Unmappable(f"{record.model} v{record.version}: trained on no batch")
    run = Run(runId=run_id("train", record.run_id), facets={
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=record.code_version, name="mlbus", producer=places.producer)})
    of = job(places, f"{record.model}.train", "BATCH", "TRAINING")
    inputs = [training_input(places, ref) for ref in record.batches]
    started = record.trained_at - timedelta(milliseconds=record.duration_ms)
    return [event(places, RunState.START, started, run, of, inputs),
            event(places, RunState.COMPLETE, record.trained_at, run, of, inputs, [model_version(places, record)])]


@dataclass
class Scoring:
    """The scoring periods open now: (model, version, period start) → whether it looked features up."""

    period_s: int
    open: dict[tuple[str, int, datetime], bool] = field(default_factory=dict)

    def period_of(self, when: datetime) -> datetime:
        seconds = int((when - EPOCH).total_seconds())
        return EPOCH + timedelta(seconds=seconds - seconds % self.period_s)


def scoring_run(places: Places, scoring: Scoring, key: tuple[str, int, datetime], state: RunState,
                looked_up: bool) -> RunEvent:
    model, version, start = key
    end = start + timedelta(seconds=scoring.period_s)
    run = Run(runId=run_id("score", model, str(version), iso(start)), facets={
        "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=iso(start), nominalEndTime=iso(end),
                                                            producer=places.producer)})
    read = [version_place(places, model, version), topic_place(places, "inference.requests")]
    read += [topic_place(places, "features.online")] if looked_up else []
    namespace, name = topic_place(places, "inference.predictions")
    return event(places, state, start if state == RunState.START else end, run,
                 job(places, f"{model}.score", "STREAMING", "SCORING"),
                 [InputDataset(namespace=n, name=d) for n, d in read], [OutputDataset(namespace=namespace, name=name)])


def predicted(places: Places, scoring: Scoring, prediction: Prediction, now: datetime) -> list[RunEvent]:
    """A prediction: the START of its version's period if it is the first seen (no version: none). One dated
    more than MAX_AHEAD after `now` is refused: its period would stay open (a START without end) till then."""
    if prediction.version is None:
        return []
    if prediction.predicted_at > now + MAX_AHEAD:
        raise Unmappable(f"prediction {prediction.prediction_id}: predicted_at {iso(prediction.predicted_at)} is "
                         f"after {iso(now + MAX_AHEAD)}: its scoring period could not close")
    key = (prediction.model, prediction.version, scoring.period_of(prediction.predicted_at))
    looked_up = bool(prediction.lookups)
    if key in scoring.open:
        scoring.open[key] = scoring.open[key] or looked_up
        return []
    started = scoring_run(places, scoring, key, RunState.START, looked_up)
    scoring.open[key] = looked_up
    return [started]


def periods_over(places: Places, scoring: Scoring, now: datetime, grace_s: float) -> list[RunEvent]:
    """COMPLETE for every open period that ended more than grace_s ago (late predictions fall in it till then)."""
    over = [key for key in scoring.open if key[2] + timedelta(seconds=scoring.period_s + grace_s) <= now]
    return [scoring_run(places, scoring, key, RunState.COMPLETE, scoring.open.pop(key)) for key in sorted(over)]
