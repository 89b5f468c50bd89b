"""Step 1: read the tenant's CSV, check it, clean it, split it, fit the preprocessing.

Run in-process as `run(paths, config)` (the local engine) or in a SageMaker
processing container as

    python -m mlaas_steps.preprocess --input /opt/ml/processing/input/data \
        --output /opt/ml/processing/output --target churn --problem-type classification

config: target, problem_type ("classification" | "regression": the kind of
the build's algorithm), seed (42), delimiter (optional; sniffed when absent),
and the algorithm choice (all optional):
    algorithm            the build's algorithm (a slug, for messages and the report)
    algorithm_explicit   true (default) when the tenant chose it; false for a default
    fitting_algorithms   {problem type: [slugs]}, the preferred first
    can_switch           the engine can run another algorithm after this step

The task kind is inferred from the target column (`infer_problem_type`).
When it is not the algorithm's: an explicit algorithm fails here, naming the
algorithms that fit (a regression algorithm on whole numbers with few values
is allowed: ratings are ordinal); a default one is switched for the first
fitting algorithm of that kind when `can_switch`, else this step fails saying
which algorithms to start the build with. The choice and the reason are the
report's `algorithm` section; schema.json carries the final problem type.

Writes, under processing/output/:
    train/train.parquet            cleaned rows: text trimmed, numbers-in-text converted,
                                   every column kept (ignored ones too)
    train/preprocessor.joblib      fitted ColumnTransformer (rides the train channel):
                                   numbers median-imputed, text most-frequent-imputed and
                                   ordinal-encoded (see build_preprocessor)
    train/schema.json              target, problem type, numeric/categorical features, classes
    train/features.npy             the train rows already transformed (float64), so the
                                   train step does not transform them again
    validation/validation.parquet
    test/test.parquet
    report/data_report.json

Splits are Parquet rather than CSV: written and read an order of magnitude
faster, and they keep the column types this step inferred, so the train and
evaluate steps never re-parse or re-infer anything.

Every problem with the data ends in `StepFailure` with a sentence the tenant
can act on.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import logging
import re
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from mlaas_steps.contract import StepPaths, stage_inputs, write_json
from mlaas_steps.failures import StepFailure, quote_list
from mlaas_steps.steps import PREPROCESS

logger = logging.getLogger(__name__)

PROBLEM_TYPES = ("classification", "regression")
SPLITS = ("train", "validation", "test")
HOLDOUT_FRACTION = 0.30  # validation + test; each gets half: 70 / 15 / 15
DELIMITERS = ",;\t|"
SNIFF_BYTES = 64 * 1024
MAX_COLUMNS = 2_000
MIN_ROWS = 20
MAX_CLASSES = 100
MAX_INFERRED_CLASSES = 20  # a numeric target of more distinct values (or with decimals) is a regression target
MAX_CATEGORIES = 20  # known values per categorical feature; rarer ones encode as NaN
ID_LIKE_MIN_DISTINCT = 50  # text columns with more distinct values, mostly unique, are identifiers or free text
NUMERIC_TEXT_SHARE = 0.95  # a text column whose values parse as numbers this often is numeric
MAX_MALFORMED_SHARE = 0.01  # rows with the wrong number of fields skipped before we give up
MAX_HEADER_BYTES = 512 * 1024  # the first line; Arrow needs it inside one block (1 MiB by default)
MAX_LINE_BYTES = 32 * 1024 * 1024  # longest row read (Arrow's block size on a retry)
PREPROCESSOR_FILE = "preprocessor.joblib"
SCHEMA_FILE = "schema.json"
TRAIN_FEATURES_FILE = "features.npy"

# First bytes of files tenants upload by mistake.
_SIGNATURES = (
    (b"PK\x03\x04", "an Excel workbook or a ZIP archive"),
    (b"\xd0\xcf\x11\xe0", "an old-style Excel (.xls) or Office document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3", "an SQLite database"),
)


_DECIMAL_COMMA = re.compile(r"(?:^|[;\t|])-?\d+,\d+(?:[;\t|]|$)", re.MULTILINE)
_DECIMAL_DOT = re.compile(r"(?:^|[;\t|])-?\d+\.\d+(?:[;\t|]|$)", re.MULTILINE)


@dataclass(frozen=True)
class _Source:
    path: Path
    encoding: str
    delimiter: str
    decimal_point: str
    header: list[str]


def run(paths: StepPaths, config: dict) -> dict:
    """Validate, clean and split the dataset; return the data report."""
    stage_inputs(paths, PREPROCESS)
    target_name = str(config.get("target") or "").strip()
    problem_type = str(config.get("problem_type") or "")
    seed = int(config.get("seed", 42))
    if problem_type not in PROBLEM_TYPES:
        raise StepFailure(f"problem type `{problem_type}` is not supported; use classification or regression")
    if not target_name:
        raise StepFailure("no target column was given; name the column the model should predict")

    source = _inspect_source(paths.processing_input("data"), config.get("delimiter"))
    frame, malformed = _read_frame(source)
    rows_in = len(frame) + malformed
    if rows_in == 0:
        raise StepFailure("the file has a header row but no data rows")
    target = _resolve_target(frame, target_name, source)
    choice = choose_algorithm(frame[target], target, problem_type, config)
    problem_type = choice["problem_type"]

    frame, target_dropped = _clean_target(frame, target, problem_type)
    # Repeated rows are real data (a few categories seen many times) and are kept;
    # the report counts them, and how many test rows the model also trained on.
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    duplicate_rows = int(pd.Series(row_hashes).duplicated().sum())
    dropped = {**target_dropped, "malformed": malformed}
    if len(frame) < MIN_ROWS:
        raise StepFailure(
            f"only {len(frame)} usable rows are left after removing {dropped['missing_target']} rows without "
            f"a `{target}` value; at least {MIN_ROWS} are needed"
        )

    frame, columns = _infer_features(frame, target)
    numeric = [c["name"] for c in columns if c["type"] == "numeric"]
    categorical = [c["name"] for c in columns if c["type"] == "categorical"]
    if not numeric and not categorical:
        ignored = [f"`{c['name']}` ({c['reason']})" for c in columns if c["type"] == "ignored"]
        detail = f": {quote_list(ignored, limit=5)}" if ignored else ""
        raise StepFailure(
            f"no usable feature columns besides the target `{target}`{detail}; "
            "add numeric columns or text columns with a limited set of values"
        )
    target_report = _target_report(frame[target], problem_type)

    parts, stratified, positions = _split(frame, target, problem_type, seed)
    test_rows_seen_in_train = int(np.isin(row_hashes[positions["test"]], row_hashes[positions["train"]]).sum())
    train_dir = paths.processing_output("train")
    train_dir.mkdir(parents=True, exist_ok=True)
    # Parquet writing runs in Arrow without the GIL: overlap it with fitting.
    with ThreadPoolExecutor(max_workers=1) as writer:
        written = [writer.submit(_write_splits, parts, paths)]
        categories = {name: _top_categories(parts["train"][name]) for name in categorical}
        preprocessor = build_preprocessor(numeric, categorical, categories)
        # ColumnTransformer.fit transforms the rows anyway; keep them for the train step.
        train_features = preprocessor.fit_transform(parts["train"].drop(columns=[target]))
        written.append(writer.submit(np.save, train_dir / TRAIN_FEATURES_FILE,
                                     np.ascontiguousarray(train_features, dtype=np.float64)))
        joblib.dump(preprocessor, train_dir / PREPROCESSOR_FILE)
        for task in written:
            task.result()
    schema = {"target": target, "problem_type": problem_type, "numeric_features": numeric,
              "categorical_features": categorical, "classes": target_report.get("classes", [])}
    write_json(train_dir / SCHEMA_FILE, schema)

    report = {
        "algorithm": choice,
        "source": {"file": source.path.name, "encoding": source.encoding, "delimiter": source.delimiter},
        "rows_in": rows_in,
        "rows_out": len(frame),
        "dropped": dropped,
        "duplicate_rows": duplicate_rows,  # kept: identical to an earlier row
        "test_rows_seen_in_train": test_rows_seen_in_train,
        "columns": [{"name": target, "type": "target", "missing": target_dropped["missing_target"]}, *columns],
        "features": {"numeric": len(numeric), "categorical": len(categorical),
                     "ignored": sum(c["type"] == "ignored" for c in columns)},
        "target": target_report,
        "splits": {name: len(part) for name, part in parts.items()},
        "stratified": stratified,
        "seed": seed,
    }
    write_json(paths.processing_output("report") / "data_report.json", report)
    logger.info("preprocess: %d rows in, %d out, %d numeric + %d categorical features",
                rows_in, len(frame), len(numeric), len(categorical))
    return report


def build_preprocessor(numeric: list[str], categorical: list[str],
                       categories: dict[str, list]) -> ColumnTransformer:
    """Median-impute numbers; most-frequent-impute + ordinal-encode text (capped categories).

    Output columns: the numeric features, then one code per categorical
    feature (`feature_layout`). Each trainer takes it from there: gradient
    boosting splits on the codes natively, the linear model one-hot encodes
    and scales them, the forest uses them as they are. Ordinal codes keep the
    matrix narrow (one column per feature, not one per value), which is what
    makes boosting fast.

    Categories are fixed up front: the MAX_CATEGORIES most frequent in the
    train split. Rarer and unseen values encode as NaN, "none of the known
    categories", which every trainer handles.
    """
    transformers = []
    if numeric:
        # np.median per column: the same medians as strategy="median", without its
        # masked-array path (3x slower); a numpy function keeps the artifact sklearn-only.
        transformers.append(("numeric", SimpleImputer(strategy=np.median), numeric))
    if categorical:
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OrdinalEncoder(categories=[categories[name] for name in categorical],
                                      handle_unknown="use_encoded_value", unknown_value=np.nan)),
        ]), categorical))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def feature_layout(schema: dict) -> list[int]:
    """Indices of the categorical codes in the preprocessor's output."""
    first = len(schema["numeric_features"])
    return list(range(first, first + len(schema["categorical_features"])))


def read_split(directory: Path) -> pd.DataFrame:
    """The rows of a split directory (every Parquet file in it, in name order)."""
    files = sorted(Path(directory).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet split in {directory}")
    if len(files) == 1:
        return pq.read_table(files[0]).to_pandas()
    return pd.concat([pq.read_table(path).to_pandas() for path in files], ignore_index=True)


# --- reading ---------------------------------------------------------------------------------

def _inspect_source(directory: Path, delimiter: str | None) -> _Source:
    path = _single_input_file(directory)
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        # A wide header may be longer than the sniffed bytes: read on to its end.
        while b"\n" not in head and len(head) <= MAX_HEADER_BYTES:
            more = handle.read(SNIFF_BYTES)
            if not more:
                break
            head += more
        complete = not handle.read(1)
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise StepFailure("the file is empty")
    encoding, text = _decode_head(head)
    if b"\n" not in head and not complete:
        raise StepFailure(
            f"the first line of the file is longer than {MAX_HEADER_BYTES // 1024} KB; a CSV starts with one "
            "header line naming the columns — check the file is a CSV with line breaks between rows"
        )
    if _looks_like_json(text):
        raise StepFailure("the file is JSON, not CSV; export the data as CSV (a header line naming the columns, "
                          "then one line per row) and upload that")
    if "\n" in text and not complete:
        text = text[: text.rfind("\n")]  # drop the cut-off last line
    delimiter = delimiter or _sniff_delimiter(text)
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as error:
        if "field limit" in str(error):
            raise StepFailure("a column name in the first line is longer than 128 KB; the first line must name "
                              "the columns — check the file is a CSV with one header line") from None
        raise StepFailure("the header row could not be read as CSV; check the first line names the columns, "
                          "separated by commas, semicolons, tabs or `|`") from None
    except StopIteration:
        raise StepFailure("the header row could not be read; check the file is a CSV") from None
    if any("\n" in name for name in header):
        raise StepFailure('the header row has a quote (`"`) that is never closed, so the following lines were read '
                          "as part of a column name; close or remove the quote in the first line")
    if len(header) > MAX_COLUMNS:
        raise StepFailure(
            f"the file has {len(header):,} columns; the limit is {MAX_COLUMNS:,} columns — "
            "keep the target and the most useful features"
        )
    return _Source(path, encoding, delimiter, _decimal_point(text, delimiter), _clean_header(header))


def _looks_like_json(text: str) -> bool:
    """A JSON document or JSON lines: `{"...` or `[{`, `["`, `[[` at the start."""
    stripped = text.lstrip()
    first, second = stripped[:1], stripped[1:].lstrip()[:1]
    return (first == "{" and second in ('"', "}", "")) or (first == "[" and second in ("{", "[", '"'))


def _single_input_file(directory: Path) -> Path:
    files = sorted(p for p in Path(directory).glob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise StepFailure("no uploaded file was found for this build; upload the CSV again")
    if len(files) > 1:
        raise StepFailure(f"expected one uploaded file, found {len(files)}: {quote_list([p.name for p in files])}")
    return files[0]


def _decode_head(head: bytes) -> tuple[str, str]:
    """The file's encoding and its first characters; StepFailure for anything that is not text."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", head.decode("utf-16", errors="ignore")
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            advice = ("export the sheet as CSV and upload that" if "Excel" in kind
                      else "upload a CSV (comma-separated text) file")
            raise StepFailure(f"the file is not a CSV: it looks like {kind}; {advice}")
    if b"\x00" in head:
        raise StepFailure("the file is not text (it contains binary data); upload a CSV (comma-separated text) file")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
        encoding = "utf-8"
    except UnicodeDecodeError:
        text, encoding = head.decode("latin-1"), "latin-1"
    controls = sum(1 for ch in text if ch not in "\t\r\n" and unicodedata.category(ch) == "Cc")
    if controls > 0.05 * max(len(text), 1):
        raise StepFailure("the file is not text (it contains binary data); upload a CSV (comma-separated text) file")
    return encoding, text


def _sniff_delimiter(text: str) -> str:
    """csv.Sniffer over the first lines, checked against the header row."""
    header_line = text.split("\n", 1)[0]
    try:
        sniffed = csv.Sniffer().sniff(text, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ""
    # The sniffer can pick a character that only occurs inside values (a
    # decimal comma); the header must contain the delimiter too.
    if sniffed and sniffed in header_line:
        return sniffed
    counts = {candidate: header_line.count(candidate) for candidate in DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _decimal_point(text: str, delimiter: str) -> str:
    """`,` for files that write 1,5 (semicolon- or tab-separated European exports), else `.`."""
    if delimiter == ",":
        return "."
    body = text.split("\n", 1)[-1]
    return "," if _DECIMAL_COMMA.search(body) and not _DECIMAL_DOT.search(body) else "."


def _clean_header(header: list[str]) -> list[str]:
    names = [name.strip().lstrip("\ufeff").strip() or f"unnamed_{index + 1}" for index, name in enumerate(header)]
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    repeated = [name for name, count in seen.items() if count > 1]
    if repeated:
        raise StepFailure(f"column names must be unique; these appear more than once: {quote_list(repeated)}")
    return names


def _read_frame(source: _Source) -> tuple[pd.DataFrame, int]:
    """All rows as a DataFrame (text trimmed, blanks missing), and how many malformed rows were skipped."""
    malformed: list[str] = []

    unclosed: list[str] = []

    def skip_malformed(row) -> str:
        malformed.append(f"{row.actual_columns} fields instead of {row.expected_columns}")
        if _swallowed_rows(row.text or "", source):
            unclosed.append((row.text or "").split("\n", 1)[0])
        return "skip"

    def read(encoding: str, block_size: int | None = None) -> pa.Table:
        malformed.clear()
        unclosed.clear()
        options = {"block_size": block_size} if block_size else {}
        return pacsv.read_csv(
            source.path,
            read_options=pacsv.ReadOptions(column_names=source.header, skip_rows=1, encoding=encoding, **options),
            parse_options=pacsv.ParseOptions(delimiter=source.delimiter, newlines_in_values=True,
                                             invalid_row_handler=skip_malformed),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, decimal_point=source.decimal_point),
        )

    encoding = "utf8" if source.encoding == "utf-8" else source.encoding
    block_size = None
    while True:
        try:
            try:
                table = read(encoding, block_size)
            except pa.ArrowInvalid as error:
                if encoding != "utf8" or "UTF8" not in str(error):
                    raise
                encoding = "latin-1"  # valid UTF-8 at the start only: a legacy Windows export
                table = read(encoding, block_size)
            break
        except pa.ArrowInvalid as error:
            if "block" in str(error) and block_size is None:
                block_size = MAX_LINE_BYTES  # a row longer than Arrow's default block: read in larger ones
                continue
            raise StepFailure(_read_failure(str(error))) from None
    rows = table.num_rows
    if unclosed:  # the rest of the file became one row with too few fields
        raise StepFailure(_unclosed_quote(unclosed[-1]))
    if malformed and len(malformed) > max(10, MAX_MALFORMED_SHARE * (rows + len(malformed))):
        raise StepFailure(
            f"{len(malformed):,} rows have a different number of fields than the header "
            f"({len(source.header)}), e.g. {malformed[0]}; quote values that contain `{_show(source.delimiter)}`"
        )
    _check_quotes_closed(table, source)
    return _trim_text(table).to_pandas(), len(malformed)


def _read_failure(error: str) -> str:
    """A sentence for what Arrow could not read (its own message names its internals)."""
    if "block" in error:  # "straddles two block boundaries", "header is larger than block size"
        return (f"a row of the file is longer than {MAX_LINE_BYTES // (1024 * 1024)} MB; usually a quote (`\"`) "
                "that is never closed, or a file without line breaks between rows — check the file is a CSV "
                "with one row per line")
    if "UTF" in error or "decode" in error.lower():
        return "the file's text encoding could not be read; save it as UTF-8 CSV and upload it again"
    detail = error.splitlines()[0] if error else "unknown error"
    return f"the file could not be read as CSV ({detail}); check that it is a CSV with one header line"


def _swallowed_rows(text: str, source: _Source) -> bool:
    """Whether a value or row runs over a line holding a whole row's worth of delimiters."""
    if "\n" not in text or len(source.header) < 2:
        return False
    return any(line.count(source.delimiter) >= len(source.header) - 1 for line in text.split("\n")[1:])


def _unclosed_quote(first_line: str) -> str:
    shown = first_line.strip()[:60]
    return (f'a quote (`"`) is never closed in the row starting `{shown}`, so the rest of the file was read as '
            'one value; close the quote, or double any quote inside a quoted value (`""`)')


def _check_quotes_closed(table: pa.Table, source: _Source) -> None:
    """StepFailure when a quote is never closed: the rest of the file then becomes one value of the last row.

    Quoted values may hold line breaks (addresses, notes), so a line break
    alone proves nothing; a value of the last row that runs over a line
    holding a whole row's worth of delimiters does.
    """
    if table.num_rows == 0:
        return
    last = table.slice(table.num_rows - 1)
    for index, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        value = last.column(index)[0].as_py()
        if value and _swallowed_rows(value, source):
            row = [str(cell) if cell is not None else "" for cell in last.to_pylist()[0].values()]
            first_line = source.delimiter.join(row[:index] + ['"' + value.split("\n", 1)[0]])
            raise StepFailure(_unclosed_quote(first_line))


def _trim_text(table: pa.Table) -> pa.Table:
    """Strip spaces around text values and treat blank ones as missing (in Arrow: fast)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            trimmed = pc.utf8_trim_whitespace(table.column(index))
            blank = pc.equal(pc.utf8_length(trimmed), 0)
            table = table.set_column(index, field, pc.if_else(blank, pa.scalar(None, field.type), trimmed))
    return table


# --- target ----------------------------------------------------------------------------------

def infer_problem_type(values: pd.Series) -> tuple[str, str]:
    """Classification or regression for a target column, and why, as words for the tenant."""
    present = values.dropna()
    if pd.api.types.is_bool_dtype(present) or _is_boolean_objects(present):
        return "classification", "holds true/false values"
    numbers = present if pd.api.types.is_numeric_dtype(present) else pd.to_numeric(present, errors="coerce")
    if not len(present) or numbers.notna().sum() < NUMERIC_TEXT_SHARE * len(present):
        examples = [f"`{v}`" for v in present[numbers.isna()].astype(str).unique()[:3]] if len(present) else []
        shown = f" such as {quote_list(examples)}" if examples else ""
        return "classification", f"holds text values{shown}"
    numbers = numbers.dropna().astype("float64")
    distinct = int(numbers.nunique())
    whole = bool((numbers == np.round(numbers)).all())
    if whole and distinct <= MAX_INFERRED_CLASSES:
        return "classification", f"holds {distinct} distinct whole numbers"
    detail = "numbers with decimals" if not whole else "whole numbers"
    return "regression", f"holds {distinct:,} distinct {detail}"


def choose_algorithm(values: pd.Series, target: str, problem_type: str, config: dict) -> dict:
    """The build's algorithm and problem type after looking at the target (see the module docstring)."""
    algorithm = str(config.get("algorithm") or "")
    explicit = bool(config.get("algorithm_explicit", True))
    fitting = {kind: list(names) for kind, names in (config.get("fitting_algorithms") or {}).items()}
    kind, why = infer_problem_type(values)
    chosen = {"slug": algorithm, "problem_type": problem_type, "explicit": explicit, "switched_from": None,
              "inferred_problem_type": kind}
    named = f"`{algorithm}`" if algorithm else "the chosen algorithm"
    if kind == problem_type:
        return {**chosen, "reason": f"target `{target}` {why}: a {kind} target, which {named} fits"}
    numeric_ordinal = problem_type == "regression" and not why.startswith(("holds text", "holds true"))
    if explicit and numeric_ordinal:
        return {**chosen, "reason": f"target `{target}` {why}, usually a classification target; {named} treats "
                                    "them as numbers on a scale (regression), as chosen"}
    options = fitting.get(kind) or []
    listed = f" ({quote_list([f'`{name}`' for name in options])})" if options else ""
    codes = ("; if the numbers are category codes, write them as text (e.g. `c12`)"
             if kind == "regression" else "")
    if explicit:
        raise StepFailure(f"{named} is a {problem_type} algorithm, but target `{target}` {why}, which makes it a "
                          f"{kind} target; choose a {kind} algorithm{listed}{codes}")
    if not options:
        raise StepFailure(f"target `{target}` {why}, which makes it a {kind} target, but no {kind} algorithm is "
                          f"available; ask the vendor to activate one")
    if not config.get("can_switch"):
        raise StepFailure(f"target `{target}` {why}, which makes it a {kind} target, but the default algorithm "
                          f"{named} is a {problem_type} algorithm; start the build again with a {kind} "
                          f"algorithm{listed}, or make one the tenant's default")
    return {**chosen, "slug": options[0], "problem_type": kind, "switched_from": algorithm or None,
            "reason": f"target `{target}` {why}: a {kind} target, so `{options[0]}` replaces the {problem_type} "
                      f"default {named}"}


def _resolve_target(frame: pd.DataFrame, name: str, source: _Source) -> str:
    if name in frame.columns:
        return name
    folded = {str(column).casefold(): column for column in frame.columns}
    if name.casefold() in folded:
        return folded[name.casefold()]
    columns = [str(column) for column in frame.columns]
    if len(columns) == 1:
        others = [d for d in DELIMITERS + ":" if d != source.delimiter and d in columns[0]]
        if others:
            shown = "tab" if others[0] == "\t" else f"`{others[0]}`"
            raise StepFailure(
                f"the delimiter looks wrong: split on `{_show(source.delimiter)}` the header is a single column "
                f"`{columns[0][:80]}` containing {shown}; separate columns with commas, semicolons, tabs or `|`"
            )
    raise StepFailure(f"column `{name}` not found; columns are: {quote_list(columns)}")


def _show(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter


def _clean_target(frame: pd.DataFrame, target: str, problem_type: str) -> tuple[pd.DataFrame, dict]:
    """Drop rows without a usable target; regression targets become floats, integral class labels ints."""
    values = frame[target]
    present = int(values.notna().sum())
    if present == 0:
        raise StepFailure(f"target `{target}` has no values: the column is empty in every row")
    invalid = 0
    if problem_type == "regression":
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce")
            invalid = int(numbers.isna().sum()) - (len(values) - present)
            if invalid > (1 - NUMERIC_TEXT_SHARE) * present:
                examples = [f"`{v}`" for v in values[numbers.isna() & values.notna()].astype(str).unique()[:3]]
                raise StepFailure(
                    f"target `{target}` is not numeric (values such as {quote_list(examples)}); "
                    "regression needs a numeric target — choose classification or another column"
                )
            values = numbers
        values = values.astype("float64")
        keep = np.isfinite(values.to_numpy())
    else:
        keep = values.notna().to_numpy()
    if not keep.all():
        frame = frame.loc[keep]
        values = values[keep]
    if problem_type == "classification" and pd.api.types.is_float_dtype(values):
        if (values == np.round(values)).all():
            values = values.astype("int64")  # 0.0 / 1.0: a 0/1 column that had blanks
    frame = frame.assign(**{target: values})
    return frame, {"missing_target": int((~keep).sum()) - invalid, "invalid_target": invalid}


def _target_report(values: pd.Series, problem_type: str) -> dict:
    name = str(values.name)
    if problem_type == "regression":
        return {"name": name, "problem_type": problem_type, "min": float(values.min()), "max": float(values.max()),
                "mean": float(values.mean()), "median": float(values.median()), "std": float(values.std())}
    counts = values.value_counts(sort=True)
    if len(counts) == 1:
        raise StepFailure(f"only one class in target `{name}`: every row is `{counts.index[0]}`")
    if len(counts) > MAX_CLASSES:
        raise StepFailure(
            f"target `{name}` has {len(counts):,} distinct values; classification supports at most "
            f"{MAX_CLASSES} classes — choose regression for a numeric target"
        )
    classes = sorted(counts.index.tolist(), key=_sort_key)
    return {"name": name, "problem_type": problem_type, "classes": _plain(classes),
            "class_counts": {str(label): int(counts[label]) for label in classes}}


def _sort_key(label: object) -> tuple:
    return (0, label, "") if isinstance(label, (int, float, np.number)) else (1, 0, str(label))


def _plain(values: list) -> list:
    return [value.item() if isinstance(value, np.generic) else value for value in values]


# --- features --------------------------------------------------------------------------------

def _infer_features(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, list[dict]]:
    """Decide each column's role; returns the frame with converted columns and the column report."""
    columns: list[dict] = []
    converted: dict[str, pd.Series] = {}
    missing_counts = frame.isna().sum()
    rows = len(frame)
    for name in frame.columns:
        if name == target:
            continue
        values = frame[name]
        entry = {"name": name, "missing": int(missing_counts[name])}
        columns.append(entry)
        if entry["missing"] == rows:
            entry.update(type="ignored", reason="empty")
        elif pd.api.types.is_bool_dtype(values) or _is_boolean_objects(values):
            converted[name] = values.astype("float64")
            entry.update(type="numeric", distinct=2)
        elif pd.api.types.is_datetime64_any_dtype(values) or _is_temporal_objects(values):
            entry.update(type="ignored", reason="dates and times are not used as features")
        elif pd.api.types.is_numeric_dtype(values):
            if values.min() == values.max():
                entry.update(type="ignored", reason="the same value in every row")
            else:
                entry["type"] = "numeric"
        else:
            numbers = _as_numbers(values)
            if numbers is not None:
                converted[name] = numbers
                entry.update(type="numeric", unparsed=int(numbers.isna().sum()) - entry["missing"])
                continue
            present = rows - entry["missing"]
            distinct = int(values.nunique())
            entry["distinct"] = distinct
            if distinct <= 1:
                entry.update(type="ignored", reason="the same value in every row")
            elif distinct > ID_LIKE_MIN_DISTINCT and distinct > 0.5 * present:
                entry.update(type="ignored", reason="too many distinct text values (an identifier or free text)")
            else:
                entry["type"] = "categorical"
                if values.dtype == object:  # mixed Python objects: make them text
                    converted[name] = values.where(values.isna(), values.astype(str))
    if converted:
        frame = frame.assign(**converted)
    return frame, columns


def _is_boolean_objects(values: pd.Series) -> bool:
    return values.dtype == object and values.dropna().map(type).eq(bool).all()


def _is_temporal_objects(values: pd.Series) -> bool:
    """Arrow dates and times arrive in pandas as datetime.date / datetime.time objects."""
    if values.dtype != object:
        return False
    first = values.dropna().head(1)
    return len(first) == 1 and isinstance(first.iloc[0], (datetime.date, datetime.time))


def _as_numbers(values: pd.Series) -> pd.Series | None:
    """Text that is numbers but for a few stray values (`?`, `n.a.`): floats, the strays missing."""
    present = values.dropna()
    if pd.to_numeric(present.head(200), errors="coerce").notna().mean() < NUMERIC_TEXT_SHARE:
        return None  # decided on a sample: most text columns are not numbers
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    if numbers.notna().sum() < NUMERIC_TEXT_SHARE * len(present):
        return None
    return numbers


def _top_categories(values: pd.Series) -> list:
    counts = values.value_counts(dropna=True)
    return sorted(counts.index[:MAX_CATEGORIES].tolist(), key=str)


# --- splitting and writing ---------------------------------------------------------------------

def _split(frame: pd.DataFrame, target: str, problem_type: str, seed: int) -> tuple[dict, bool, dict]:
    """70 / 15 / 15, stratified on the class when every class has enough rows; also each split's row positions.

    Identical rows may land in train and test. Removing test rows seen in
    training would empty the test split of legitimately repetitive data (a
    few categories, each seen many times: every test row is "seen"), and
    keeping identical rows together would test on combinations training never
    saw; both misstate how the model does on data like the tenant's. The data
    report says how many test rows were seen in training instead.
    """
    # Integer codes: stratifying on text labels would sort strings, ten times slower.
    labels = pd.factorize(frame[target])[0] if problem_type == "classification" else None
    positions = np.arange(len(frame))
    try:
        train, holdout = train_test_split(positions, test_size=HOLDOUT_FRACTION, random_state=seed, stratify=labels)
        validation, test = train_test_split(holdout, test_size=0.5, random_state=seed,
                                            stratify=None if labels is None else labels[holdout])
        stratified = labels is not None
    except ValueError:  # a class with too few rows to appear in every split
        train, holdout = train_test_split(positions, test_size=HOLDOUT_FRACTION, random_state=seed)
        validation, test = train_test_split(holdout, test_size=0.5, random_state=seed)
        stratified = False
    # File order within each split: contiguous reads, and no estimator here depends on row order.
    positions = {name: np.sort(index) for name, index in (("train", train), ("validation", validation),
                                                          ("test", test))}
    parts = {name: frame.iloc[index].reset_index(drop=True) for name, index in positions.items()}
    return parts, stratified, positions


def _write_splits(parts: dict[str, pd.DataFrame], paths: StepPaths) -> None:
    for name, part in parts.items():
        _write_parquet(part, paths.processing_output(name) / f"{name}.parquet")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Dictionary-encoding floats costs more time than it saves space.
    text_columns = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, path, use_dictionary=text_columns or False)


# --- command line (SageMaker processing container) ---------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="/opt/ml/processing/input/data")
    parser.add_argument("--output", default="/opt/ml/processing/output")
    parser.add_argument("--target", required=True)
    parser.add_argument("--problem-type", required=True, choices=PROBLEM_TYPES)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--delimiter", default=None)
    parser.add_argument("--algorithm-choice", default="{}",
                        help="JSON: algorithm, algorithm_explicit, fitting_algorithms (see the module docstring)")
    args = parser.parse_args(argv)
    # The root (MLAAS_ML_ROOT, /opt/ml in a container) is where the exit message goes.
    paths = StepPaths(StepPaths.from_environ().root,
                      overrides={"processing/input/data": args.input, "processing/output": args.output})
    config = {"target": args.target, "problem_type": args.problem_type, "seed": args.seed,
              "delimiter": args.delimiter, **_algorithm_choice(args.algorithm_choice)}
    from mlaas_steps.container import run_in_container

    return run_in_container(run, paths, config, failure_file=paths.message_path)


def _algorithm_choice(text: str) -> dict:
    """The algorithm-choice keys of the config from the command line's JSON (an engine runs one algorithm
    per execution there, so it can never switch: `can_switch` is false)."""
    import json

    try:
        choice = json.loads(text or "{}")
    except ValueError:
        choice = None
    if not isinstance(choice, dict):
        raise SystemExit("--algorithm-choice must be a JSON object")
    keys = ("algorithm", "algorithm_explicit", "fitting_algorithms")
    return {**{key: choice[key] for key in keys if key in choice}, "can_switch": False}


if __name__ == "__main__":
    sys.exit(main())
