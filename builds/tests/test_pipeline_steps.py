"""The build steps end to end on scikit-learn's bundled datasets, and every bad upload we reject.

Plain pytest, no Django:
    .venv/bin/python -m pytest builds/tests/test_pipeline_steps.py -p no:django -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from mlaas_steps import StepFailure, StepPaths, evaluate, make_model_tarball, place_dataset, preprocess, train
from mlaas_steps.runner import instance_limits, run_step
from mlaas_steps.sample_data import SAMPLES, write_sample_csvs
from mlaas_steps.trainers import TRAINERS, point_to_hyperparameters, validate_ranges

CPUS, MEMORY = instance_limits("ml.m5.large")


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> dict[str, Path]:
    return write_sample_csvs(tmp_path_factory.mktemp("samples"))


def run_pipeline(root: Path, csv_path: Path, *, target: str, problem_type: str, entry_point: str,
                 tuning: bool = False, max_tuning_jobs: int = 1) -> tuple[StepPaths, dict]:
    """preprocess -> train -> evaluate, each through run_step; returns the paths and each step's summary."""
    paths = StepPaths(root)
    place_dataset(paths, csv_path)
    configs = {
        "preprocess": {"target": target, "problem_type": problem_type, "seed": 42},
        "train": {"entry_point": entry_point, "problem_type": problem_type, "hyperparameters": {},
                  "tuning_ranges": {}, "tuning_enabled": tuning, "max_tuning_jobs": max_tuning_jobs,
                  "objective_metric": "", "seed": 42},
        "evaluate": {},
    }
    summaries = {}
    for step, config in configs.items():
        result = run_step(f"mlaas_steps.{step}:run", paths, config, cpu_count=CPUS, memory_bytes=MEMORY,
                          timeout_seconds=120, log_path=root / "build.log", instance_type="ml.m5.large")
        assert (result.status, result.failure_reason) == ("succeeded", ""), result.log
        summaries[step] = result.summary
    return paths, summaries


def sample_config(name: str) -> dict:
    return {"target": SAMPLES[name]["target"], "problem_type": SAMPLES[name]["problem_type"]}


def test_breast_cancer_pipeline_builds_a_model_that_predicts_raw_rows(tmp_path, samples):
    paths, summaries = run_pipeline(tmp_path, samples["breast_cancer"], entry_point="hist_gradient_boosting",
                                    **sample_config("breast_cancer"))

    report = json.loads((tmp_path / "processing/output/report/data_report.json").read_text())
    assert (report["rows_in"], report["rows_out"]) == (569, 569)
    assert report["dropped"] == {"missing_target": 0, "invalid_target": 0, "malformed": 0}
    assert (report["duplicate_rows"], report["test_rows_seen_in_train"]) == (0, 0)
    assert report["target"]["class_counts"] == {"benign": 357, "malignant": 212}
    assert report["splits"] == {"train": 398, "validation": 85, "test": 86}
    assert report["features"] == {"numeric": 30, "categorical": 0, "ignored": 0}
    assert summaries["preprocess"] == report

    evaluation = json.loads((tmp_path / "processing/output/evaluation/evaluation.json").read_text())
    assert evaluation["metrics"]["accuracy"] > 0.9
    assert evaluation["metrics"]["roc_auc"] > 0.95
    assert evaluation["objective"]["metric"] == "f1"
    assert evaluation["objective"]["score"] == evaluation["metrics"]["f1"]
    assert set(evaluation["binary_classification_metrics"]) == {"accuracy", "f1", "precision", "recall", "roc_auc"}
    assert summaries["evaluate"] == evaluation

    info = json.loads((tmp_path / "model/model_info.json").read_text())
    assert (info["algorithm"], info["classes"], info["positive_class"]) == (
        "hist_gradient_boosting", ["benign", "malignant"], "malignant")
    model = joblib.load(tmp_path / "model/model.joblib")
    raw = pd.read_csv(samples["breast_cancer"]).head(20)
    predicted = model.predict(raw.drop(columns=["diagnosis"]))
    assert (predicted == raw["diagnosis"].to_numpy()).mean() >= 0.9


def test_breast_cancer_tuning_keeps_the_best_of_three_trials(tmp_path, samples):
    _, summaries = run_pipeline(tmp_path, samples["breast_cancer"], entry_point="hist_gradient_boosting",
                                tuning=True, max_tuning_jobs=3, **sample_config("breast_cancer"))

    tuning = summaries["train"]["tuning"]
    assert [trial["trial"] for trial in tuning["trials"]] == [1, 2, 3]
    scores = [trial["score"] for trial in tuning["trials"]]
    assert all(0.8 < score <= 1.0 for score in scores)
    assert tuning["best_trial"] == 1 + scores.index(max(scores))
    assert summaries["train"]["objective"]["score"] == max(scores)
    assert tuning["trials"][0]["hyperparameters"] == TRAINERS["hist_gradient_boosting"].hyperparameters({})
    assert summaries["evaluate"]["metrics"]["accuracy"] > 0.9
    assert "objective_score=" in (Path(tmp_path) / "build.log").read_text()


def test_diabetes_regression_pipeline(tmp_path, samples):
    _, summaries = run_pipeline(tmp_path, samples["diabetes"], entry_point="hist_gradient_boosting",
                                **sample_config("diabetes"))

    metrics = summaries["evaluate"]["metrics"]
    assert set(metrics) == {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.3
    assert 0 < metrics["mae"] < metrics["rmse"] < 80
    assert summaries["evaluate"]["objective"] == {"metric": "rmse", "value": metrics["rmse"],
                                                  "score": -metrics["rmse"], "higher_is_better": False}
    assert summaries["preprocess"]["target"]["name"] == "progression"
    assert summaries["preprocess"]["rows_out"] == 442


@pytest.mark.parametrize("entry_point", sorted(TRAINERS))
def test_wine_three_classes_with_every_trainer(tmp_path, samples, entry_point):
    _, summaries = run_pipeline(tmp_path, samples["wine"], entry_point=entry_point, **sample_config("wine"))

    evaluation = summaries["evaluate"]
    assert summaries["train"]["classes"] == ["class_0", "class_1", "class_2"]
    assert evaluation["metrics"]["accuracy"] > 0.85
    assert evaluation["metrics"]["roc_auc"] > 0.9
    assert "multiclass_classification_metrics" in evaluation


def test_every_trainer_handles_regression(tmp_path, samples):
    paths = StepPaths(tmp_path)
    place_dataset(paths, samples["diabetes"])
    preprocess.run(paths, sample_config("diabetes"))
    for entry_point in sorted(TRAINERS):
        info = train.run(paths, {"entry_point": entry_point, "problem_type": "regression"})
        metrics = evaluate.run(paths, {})["metrics"]
        assert info["algorithm"] == entry_point
        assert metrics["r2"] > 0.3, entry_point


@pytest.mark.parametrize("entry_point", sorted(TRAINERS))
def test_categorical_features_with_unseen_and_missing_values_at_prediction(tmp_path, entry_point):
    rng = np.random.default_rng(3)
    rows = 600
    plan = rng.choice(["basic", "pro", "team", "enterprise"], rows)
    frame = pd.DataFrame({"usage": rng.normal(size=rows).round(3), "plan": plan,
                          "churn": np.where(np.isin(plan, ["basic", "team"]), "yes", "no")})
    paths = write_upload(tmp_path, frame.to_csv(index=False))
    preprocess.run(paths, {"target": "churn", "problem_type": "classification"})
    train.run(paths, {"entry_point": entry_point})

    assert evaluate.run(paths, {})["metrics"]["accuracy"] > 0.95
    model = joblib.load(paths.model_dir / "model.joblib")
    rows = pd.DataFrame({"usage": [0.1, 0.2, None, 0.4], "plan": ["basic", "pro", None, "platinum"]})
    assert list(model.predict(rows)[:2]) == ["yes", "no"]
    assert set(model.predict(rows)) <= {"yes", "no"}


def test_evaluate_reads_a_model_tarball(tmp_path, samples):
    paths = StepPaths(tmp_path)
    place_dataset(paths, samples["wine"])
    preprocess.run(paths, sample_config("wine"))
    train.run(paths, {"entry_point": "linear"})
    model_input = tmp_path / "sagemaker-model"
    make_model_tarball(paths.model_dir, model_input / "model.tar.gz")
    paths = StepPaths(tmp_path, overrides={"processing/input/model": model_input})

    evaluation = evaluate.run(paths, {"objective_metric": "accuracy"})

    assert evaluation["objective"]["metric"] == "accuracy"
    assert evaluation["metrics"]["accuracy"] > 0.85


# --- bad uploads --------------------------------------------------------------------------------

def write_upload(root: Path, content: bytes | str, name: str = "upload.csv") -> StepPaths:
    paths = StepPaths(root)
    directory = paths.processing_input("data")
    directory.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    (directory / name).write_bytes(data)
    return paths


def preprocess_failure(paths: StepPaths, target: str = "label", problem_type: str = "classification",
                       **extra) -> str:
    with pytest.raises(StepFailure) as failure:
        preprocess.run(paths, {"target": target, "problem_type": problem_type, **extra})
    return failure.value.reason


def small_table(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "a": rng.normal(size=rows).round(4),
        "b": rng.integers(0, 100, size=rows),
        "c": rng.choice(["red", "green", "blue"], size=rows),
        "label": rng.choice(["no", "yes"], size=rows),
    })


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file_is_rejected(tmp_path, content):
    assert preprocess_failure(write_upload(tmp_path, content)) == "the file is empty"


def test_header_only_is_rejected(tmp_path):
    reason = preprocess_failure(write_upload(tmp_path, "a,b,label\n"))
    assert reason == "the file has a header row but no data rows"


def test_missing_target_lists_the_columns(tmp_path):
    paths = write_upload(tmp_path, small_table().to_csv(index=False))
    reason = preprocess_failure(paths, target="churn")
    assert reason == "column `churn` not found; columns are: a, b, c, label"


def test_missing_target_truncates_a_long_column_list(tmp_path):
    frame = pd.DataFrame(np.ones((3, 30)), columns=[f"col{i}" for i in range(30)])
    reason = preprocess_failure(write_upload(tmp_path, frame.to_csv(index=False)), target="churn")
    assert reason.startswith("column `churn` not found; columns are: col0, col1, col2,")
    assert reason.endswith("col19, … (10 more)")


def test_target_matches_ignoring_case(tmp_path):
    frame = small_table().rename(columns={"label": "Label"})
    report = preprocess.run(write_upload(tmp_path, frame.to_csv(index=False)),
                            {"target": "label", "problem_type": "classification"})
    assert report["target"]["name"] == "Label"


def test_one_class_is_rejected(tmp_path):
    frame = small_table().assign(label="yes")
    reason = preprocess_failure(write_upload(tmp_path, frame.to_csv(index=False)))
    assert reason == "only one class in target `label`: every row is `yes`"


def test_target_without_values_is_rejected(tmp_path):
    frame = small_table().assign(label="")
    reason = preprocess_failure(write_upload(tmp_path, frame.to_csv(index=False)))
    assert reason == "target `label` has no values: the column is empty in every row"


def test_regression_on_text_target_is_rejected(tmp_path):
    reason = preprocess_failure(write_upload(tmp_path, small_table().to_csv(index=False)), problem_type="regression",
                                algorithm="gbm-regressor",
                                fitting_algorithms={"classification": ["gbm-classifier", "linear-classifier"]})
    assert reason == ("`gbm-regressor` is a regression algorithm, but target `label` holds text values such as "
                      "`yes`, `no`, which makes it a classification target; choose a classification algorithm "
                      "(`gbm-classifier`, `linear-classifier`)")


FITTING = {"classification": ["gbm-classifier", "linear-classifier"],
           "regression": ["gbm-regressor", "linear-regressor"]}


def numeric_target_table(rows: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, rows).round(1), "rooms": rng.integers(1, 6, rows)})
    frame["price"] = (frame["size"] * 3000 + frame["rooms"] * 10000 + rng.normal(0, 5000, rows)).round(0)
    return frame


@pytest.mark.parametrize(("values", "expected"), [
    (pd.Series(["yes", "no", None]), ("classification", "holds text values such as `yes`, `no`")),
    (pd.Series([0, 1, 1, 0]), ("classification", "holds 2 distinct whole numbers")),
    (pd.Series([1.0, 2.0, 3.0, np.nan]), ("classification", "holds 3 distinct whole numbers")),
    (pd.Series(range(50)), ("regression", "holds 50 distinct whole numbers")),
    (pd.Series([0.5, 1.25, 2.0]), ("regression", "holds 3 distinct numbers with decimals")),
    (pd.Series(["1.5", "2.5", "3"]), ("regression", "holds 3 distinct numbers with decimals")),
])
def test_infer_problem_type_from_the_target_values(values, expected):
    assert preprocess.infer_problem_type(values) == expected


def test_default_classifier_on_a_numeric_target_switches_to_a_regressor(tmp_path):
    paths = write_upload(tmp_path, numeric_target_table().to_csv(index=False))

    report = preprocess.run(paths, {"target": "price", "problem_type": "classification", "algorithm": "gbm-classifier",
                                    "algorithm_explicit": False, "fitting_algorithms": FITTING, "can_switch": True})

    assert report["algorithm"] == {
        "slug": "gbm-regressor", "problem_type": "regression", "explicit": False, "switched_from": "gbm-classifier",
        "inferred_problem_type": "regression",
        "reason": "target `price` holds 120 distinct whole numbers: a regression target, so `gbm-regressor` "
                  "replaces the classification default `gbm-classifier`"}
    schema = json.loads((paths.processing_output("train") / "schema.json").read_text())
    assert (schema["problem_type"], schema["classes"]) == ("regression", [])


def test_default_algorithm_that_fits_is_kept_with_the_reason(tmp_path):
    paths = write_upload(tmp_path, small_table().to_csv(index=False))

    report = preprocess.run(paths, {"target": "label", "problem_type": "classification", "algorithm": "gbm-classifier",
                                    "algorithm_explicit": False, "fitting_algorithms": FITTING, "can_switch": True})

    assert (report["algorithm"]["slug"], report["algorithm"]["switched_from"], report["algorithm"]["reason"]) == (
        "gbm-classifier", None,
        "target `label` holds text values such as `yes`, `no`: a classification target, which `gbm-classifier` fits")


def test_default_algorithm_that_cannot_switch_says_what_to_start_with(tmp_path):
    reason = preprocess_failure(write_upload(tmp_path, numeric_target_table().to_csv(index=False)), target="price",
                                algorithm="gbm-classifier", algorithm_explicit=False, fitting_algorithms=FITTING)
    assert reason == ("target `price` holds 120 distinct whole numbers, which makes it a regression target, but the "
                      "default algorithm `gbm-classifier` is a classification algorithm; start the build again with "
                      "a regression algorithm (`gbm-regressor`, `linear-regressor`), or make one the tenant's "
                      "default")


def test_explicit_classifier_on_a_numeric_target_fails_naming_the_regressors(tmp_path):
    reason = preprocess_failure(write_upload(tmp_path, numeric_target_table().to_csv(index=False)), target="price",
                                algorithm="gbm-classifier", algorithm_explicit=True, fitting_algorithms=FITTING,
                                can_switch=True)
    assert reason == ("`gbm-classifier` is a classification algorithm, but target `price` holds 120 distinct whole "
                      "numbers, which makes it a regression target; choose a regression algorithm (`gbm-regressor`, "
                      "`linear-regressor`); if the numbers are category codes, write them as text (e.g. `c12`)")


def test_explicit_regressor_on_few_whole_numbers_is_allowed(tmp_path):
    frame = numeric_target_table().assign(price=lambda f: f["rooms"])
    report = preprocess.run(write_upload(tmp_path, frame.drop(columns=["rooms"]).to_csv(index=False)),
                            {"target": "price", "problem_type": "regression", "algorithm": "gbm-regressor",
                             "fitting_algorithms": FITTING})
    assert (report["algorithm"]["problem_type"], report["algorithm"]["inferred_problem_type"]) == (
        "regression", "classification")


def test_non_numeric_garbage_has_no_usable_features(tmp_path):
    rng = np.random.default_rng(1)
    garbage = ["".join(rng.choice(list("qwertyuiop#%&"), 12)) for _ in range(300)]
    frame = pd.DataFrame({"notes": garbage, "code": garbage[::-1], "label": rng.choice(["no", "yes"], 300)})
    reason = preprocess_failure(write_upload(tmp_path, frame.to_csv(index=False)))
    assert reason == (
        "no usable feature columns besides the target `label`: "
        "`notes` (too many distinct text values (an identifier or free text)), "
        "`code` (too many distinct text values (an identifier or free text)); "
        "add numeric columns or text columns with a limited set of values"
    )


def test_unknown_delimiter_is_reported_as_wrong_delimiter(tmp_path):
    paths = write_upload(tmp_path, small_table().to_csv(index=False, sep=":"))
    reason = preprocess_failure(paths)
    assert reason.startswith("the delimiter looks wrong: split on `,` the header is a single column `a:b:c:label`")


def test_forced_delimiter_that_does_not_match_is_reported(tmp_path):
    paths = write_upload(tmp_path, small_table().to_csv(index=False, sep=";"))
    reason = preprocess_failure(paths, delimiter=",")
    assert reason == (
        "the delimiter looks wrong: split on `,` the header is a single column `a;b;c;label` containing `;`; "
        "separate columns with commas, semicolons, tabs or `|`"
    )


@pytest.mark.parametrize(("content", "expected"), [
    (np.random.default_rng(0).bytes(5000), "the file is not text (it contains binary data); upload a CSV "
                                           "(comma-separated text) file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "the file is not a CSV: it looks like a PNG image; "
                                                          "upload a CSV (comma-separated text) file"),
    (b"PK\x03\x04\x14\x00\x06\x00" + bytes(100), "the file is not a CSV: it looks like an Excel workbook or a ZIP "
                                                 "archive; export the sheet as CSV and upload that"),
])
def test_binary_files_are_rejected(tmp_path, content, expected):
    assert preprocess_failure(write_upload(tmp_path, content)) == expected


def test_too_wide_file_is_rejected_before_reading_rows(tmp_path):
    header = ",".join(f"f{i}" for i in range(2_499)) + ",label\n"
    row = ",".join("1" for _ in range(2_499)) + ",yes\n"
    reason = preprocess_failure(write_upload(tmp_path, header + row * 30))
    assert reason == ("the file has 2,500 columns; the limit is 2,000 columns — "
                      "keep the target and the most useful features")


LABELED_ROWS = "".join(f"{i},{i % 7},{'yes' if i % 2 else 'no'}\n" for i in range(60))


def test_header_line_longer_than_the_limit_is_rejected_in_words(tmp_path):
    header = ",".join(f"c{i:04d}_" + "n" * 600 for i in range(1_000)) + ",label\n"
    reason = preprocess_failure(write_upload(tmp_path, header + "1," * 1_000 + "yes\n"))
    assert reason == ("the first line of the file is longer than 512 KB; a CSV starts with one header line naming "
                      "the columns — check the file is a CSV with line breaks between rows")


def test_header_longer_than_the_sniffed_bytes_is_read_whole(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(30, 1_500)).round(2), columns=[f"feature_{i:04d}_" + "n" * 40
                                                                         for i in range(1_500)])
    frame["label"] = rng.choice(["no", "yes"], 30)
    assert len(frame.columns.str.cat(sep=",")) > preprocess.SNIFF_BYTES

    report = preprocess.run(write_upload(tmp_path, frame.to_csv(index=False)),
                            {"target": "label", "problem_type": "classification"})

    assert report["features"] == {"numeric": 1_500, "categorical": 0, "ignored": 0}


@pytest.mark.parametrize("content", [
    json.dumps([{"a": i, "b": i % 7, "label": "yes" if i % 2 else "no"} for i in range(60)]),
    "\n".join(json.dumps({"a": i, "label": "yes" if i % 2 else "no"}) for i in range(60)),
    ' [\n  {"a": 1, "label": "yes"}\n]',
])
def test_json_file_named_csv_is_rejected_in_words(tmp_path, content):
    reason = preprocess_failure(write_upload(tmp_path, content, name="export.csv"))
    assert reason == ("the file is JSON, not CSV; export the data as CSV (a header line naming the columns, "
                      "then one line per row) and upload that")


def test_very_long_line_is_read(tmp_path):
    content = "a,b,notes,label\n" + "".join(f"{i},{i % 7},short,{'yes' if i % 2 else 'no'}\n" for i in range(60))
    content += "1,2," + "x" * 3_000_000 + ",yes\n"

    report = preprocess.run(write_upload(tmp_path, content), {"target": "label", "problem_type": "classification"})

    assert (report["rows_in"], report["rows_out"], report["dropped"]["malformed"]) == (61, 61, 0)


def test_line_longer_than_the_limit_is_rejected_in_words(tmp_path, monkeypatch):
    monkeypatch.setattr(preprocess, "MAX_LINE_BYTES", 1024 * 1024)
    content = "a,b,label\n" + LABELED_ROWS + "1," + "x" * 3_000_000 + ",yes\n" + LABELED_ROWS
    reason = preprocess_failure(write_upload(tmp_path, content))
    assert reason == ("a row of the file is longer than 1 MB; usually a quote (`\"`) that is never closed, or a "
                      "file without line breaks between rows — check the file is a CSV with one row per line")


@pytest.mark.parametrize(("broken_row", "shown"), [
    ('"1,2,yes\n', '"1,2,yes'),  # the rest of the file is one row with too few fields
    ('1,"2,yes\n', '1,"2,yes'),
    ('1,2,"yes\n', '1,2,"yes'),  # the rest of the file is one target value
])
def test_unclosed_quote_is_reported_in_words(tmp_path, broken_row, shown):
    content = "a,b,label\n" + LABELED_ROWS + broken_row + LABELED_ROWS
    reason = preprocess_failure(write_upload(tmp_path, content))
    assert reason == (f'a quote (`"`) is never closed in the row starting `{shown}`, so the rest of the file was '
                      'read as one value; close the quote, or double any quote inside a quoted value (`""`)')


def test_unclosed_quote_in_the_header_is_reported_in_words(tmp_path):
    reason = preprocess_failure(write_upload(tmp_path, 'a,b,"label\n' + LABELED_ROWS))
    assert reason == ('the header row has a quote (`"`) that is never closed, so the following lines were read as '
                      "part of a column name; close or remove the quote in the first line")


def test_quoted_values_with_line_breaks_are_still_read(tmp_path):
    content = "a,b,label\n" + LABELED_ROWS + '1,"2\nstreet, town",yes\n'
    report = preprocess.run(write_upload(tmp_path, content), {"target": "label", "problem_type": "classification"})
    assert (report["rows_in"], report["rows_out"]) == (61, 61)


def test_too_few_rows_after_cleaning(tmp_path):
    frame = small_table(rows=22)
    frame.loc[:2, "label"] = None
    reason = preprocess_failure(write_upload(tmp_path, frame.to_csv(index=False)))
    assert reason == ("only 19 usable rows are left after removing 3 rows without a `label` value; "
                      "at least 20 are needed")


def test_repeated_categorical_rows_are_kept_and_counted(tmp_path):
    colors = ["red", "green", "blue", "black", "white"]
    frame = pd.DataFrame({"color": [colors[i % 5] for i in range(100)]})
    frame["label"] = np.where(frame["color"].isin(["red", "blue"]), "warm", "cold")
    upload = tmp_path / "colors.csv"
    frame.to_csv(upload, index=False)

    _, summaries = run_pipeline(tmp_path / "build", upload, target="label", problem_type="classification",
                                entry_point="hist_gradient_boosting")

    report = summaries["preprocess"]
    assert (report["rows_in"], report["rows_out"], report["duplicate_rows"]) == (100, 100, 95)
    assert report["splits"] == {"train": 70, "validation": 15, "test": 15}
    assert report["test_rows_seen_in_train"] == 15
    assert summaries["evaluate"]["metrics"]["accuracy"] == 1.0


def test_duplicates_are_kept_and_missing_targets_dropped_and_counted(tmp_path, samples):
    frame = pd.read_csv(samples["breast_cancer"])
    unlabeled = frame.head(3).assign(diagnosis=np.nan)
    unlabeled["mean radius"] += 1000  # not duplicates of labeled rows
    upload = pd.concat([frame, frame.iloc[10:15], unlabeled], ignore_index=True)
    paths = write_upload(tmp_path, upload.to_csv(index=False))

    report = preprocess.run(paths, {"target": "diagnosis", "problem_type": "classification"})

    assert (report["rows_in"], report["rows_out"]) == (577, 574)
    assert report["dropped"] == {"missing_target": 3, "invalid_target": 0, "malformed": 0}
    assert report["duplicate_rows"] == 5
    assert sum(report["splits"].values()) == 574
    split_rows = sum(len(preprocess.read_split(paths.processing_output(name))) for name in preprocess.SPLITS)
    assert split_rows == 574


def test_utf8_bom_semicolons_and_decimal_commas_are_accepted(tmp_path, samples):
    frame = pd.read_csv(samples["wine"])
    frame["origin"] = np.where(frame.index % 3 == 0, "Crémant", "Côte")
    text = frame.to_csv(index=False, sep=";", decimal=",")
    paths = write_upload(tmp_path, "\ufeff" + text)

    report = preprocess.run(paths, {"target": "cultivar", "problem_type": "classification"})

    assert report["source"] == {"file": "upload.csv", "encoding": "utf-8", "delimiter": ";"}
    assert report["columns"][1]["name"] == "alcohol"
    assert report["features"] == {"numeric": 13, "categorical": 1, "ignored": 0}
    train_rows = preprocess.read_split(paths.processing_output("train"))
    assert set(train_rows["origin"]) == {"Crémant", "Côte"}
    assert train_rows["alcohol"].dtype == np.float64


def test_latin1_text_with_stray_values_and_malformed_rows(tmp_path):
    frame = small_table(rows=200)
    frame["city"] = np.where(frame.index % 2 == 0, "Zürich", "Genève")
    frame["b"] = frame["b"].astype(str)
    frame.loc[5, "b"] = "?"
    lines = frame.to_csv(index=False).splitlines()
    lines.insert(7, "1,2,3,4,5,6,7")  # a row with too many fields
    paths = write_upload(tmp_path, ("\n".join(lines) + "\n").encode("latin-1"))

    report = preprocess.run(paths, {"target": "label", "problem_type": "classification"})

    assert report["source"]["encoding"] == "latin-1"
    assert report["dropped"]["malformed"] == 1
    assert report["rows_in"] == 201
    columns = {column["name"]: column for column in report["columns"]}
    assert (columns["b"]["type"], columns["b"]["unparsed"]) == ("numeric", 1)
    assert (columns["city"]["type"], columns["city"]["distinct"]) == ("categorical", 2)


def test_failure_reason_reaches_run_step_verbatim(tmp_path):
    paths = write_upload(tmp_path, "a,b,label\n")
    result = run_step("mlaas_steps.preprocess:run", paths, {"target": "label", "problem_type": "classification"},
                      cpu_count=1, memory_bytes=MEMORY, timeout_seconds=60, log_path=tmp_path / "log.txt")
    assert (result.status, result.failure_kind, result.failure_reason) == (
        "failed", "step_failure", "the file has a header row but no data rows")
    assert "Traceback" not in result.log


# --- trainers --------------------------------------------------------------------------------

def test_unit_cube_maps_onto_ranges_in_name_order():
    ranges = validate_ranges(TRAINERS["random_forest"], TRAINERS["random_forest"].default_tuning_ranges)
    # sorted names: max_depth, max_features, min_samples_leaf, n_estimators
    assert point_to_hyperparameters(ranges, [0.0, 0.99, 0.0, 1.0]) == {
        "max_depth": None, "max_features": 0.5, "min_samples_leaf": 1, "n_estimators": 300}


def test_hyperparameters_from_text_and_unknown_names():
    trainer = TRAINERS["hist_gradient_boosting"]
    assert trainer.hyperparameters({"max_iter": "50", "max_depth": "none", "learning_rate": "0.2"})["max_iter"] == 50
    with pytest.raises(StepFailure) as failure:
        trainer.hyperparameters({"depth": 3})
    assert failure.value.reason.startswith("unknown hyperparameter `depth` for hist_gradient_boosting; known: ")


def test_train_reports_invalid_hyperparameter_values(tmp_path, samples):
    paths = StepPaths(tmp_path)
    place_dataset(paths, samples["wine"])
    preprocess.run(paths, sample_config("wine"))
    with pytest.raises(StepFailure) as failure:
        train.run(paths, {"entry_point": "random_forest", "hyperparameters": {"n_estimators": 0}})
    assert failure.value.reason.startswith("invalid hyperparameters for random_forest: The 'n_estimators' parameter")


def test_sagemaker_hyperparameters_become_a_train_config():
    config = train.config_from_hyperparameters({
        "algorithm": "linear", "target": "y", "problem_type": "regression", "objective_metric": "r2",
        "hyperparameters": '{"alpha": "2"}', "tuning_ranges": "{}", "u1": "0.5", "u0": "0.25",
    })
    assert config["entry_point"] == "linear"
    assert config["hyperparameters"] == {"alpha": "2"}
    assert config["point"] == [0.25, 0.5]


def test_preprocess_command_line_writes_the_exit_message(tmp_path):
    paths = write_upload(tmp_path, "a,b,label\n")
    message = tmp_path / "message"
    os.environ.pop("MLAAS_ML_ROOT", None)
    from mlaas_steps.container import run_in_container

    code = run_in_container(preprocess.run, paths, {"target": "label", "problem_type": "classification"},
                            failure_file=message)
    assert code == 1
    assert message.read_text() == "the file has a header row but no data rows"
